//! HTTP serving: strict request parsing ([`request`]), responses with the cache policy
//! ([`respond`]), in-memory bodies ([`body`]), the server itself ([`server`]), the replay
//! routes ([`replay`]) and the admin API and event stream ([`admin`]).

pub mod admin;
pub mod body;
pub mod replay;
pub mod request;
pub mod respond;
pub mod server;
