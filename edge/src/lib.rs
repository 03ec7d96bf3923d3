//! The edge: a cache tier deployed per region between players and the regional origins, built
//! on pingora's proxy and cache. Its one job is herd control: however many players ask for the
//! same new part, blocking playlist or hinted part at once, the origin sees one request per
//! edge, and every waiter gets the answer the moment the first request's does.
//!
//! A request flows through [`proxy::Edge`]'s phases: [`request`] reads it into a kind and a
//! normalized cache key (or refuses it), the cache lock makes the first request for a key the
//! only one that goes upstream, and [`storage::MediaCache`] streams what that request receives
//! to every other request for the key while it arrives, then keeps it, bounded by bytes.
//! [`gzip`] compresses each playlist version once for the players that accept gzip.
//! [`http3`] serves HTTP/3 through the same proxy and cache.
//! [`signing`] checks signed playback URLs and hands signatures on to playlist URIs;
//! [`web`] is the watch page the edge serves itself; [`upstream`] keeps the origins in
//! priority order with their health; [`admission`] bounds the open connections; [`config`] is
//! the YAML file; [`metrics`] what it counts; [`server`] puts the services together.

#[cfg(feature = "proxy")]
pub mod admission;
pub mod config;
#[cfg(feature = "proxy")]
pub mod gzip;
#[cfg(feature = "proxy")]
pub mod http3;
#[cfg(feature = "proxy")]
pub mod metrics;
#[cfg(feature = "proxy")]
pub mod proxy;
pub mod request;
#[cfg(feature = "proxy")]
pub mod server;
pub mod signing;
#[cfg(feature = "proxy")]
pub mod storage;
pub mod upstream;
pub mod web;
