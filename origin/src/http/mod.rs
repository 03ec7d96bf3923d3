//! HTTP serving: strict request parsing ([`request`]), responses with the cache policy
//! ([`respond`]), in-memory bodies ([`body`]) and the server itself ([`server`]).

pub mod body;
pub mod request;
pub mod respond;
pub mod server;
