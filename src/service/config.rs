//! Server configuration (placeholder; being written).

use std::net::SocketAddr;

/// The server's settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Listen address.
    pub listen: SocketAddr,
}
