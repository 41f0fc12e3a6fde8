//! The server: data directory, node, transport and service wiring.
//! (Being written; see issue 6.)

use super::config::ServerConfig;

/// A running server.
pub struct Server {
    _config: ServerConfig,
}

/// Why a server could not start.
#[derive(Debug)]
pub struct ServerError(pub String);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServerError {}

impl Server {
    /// Opens the data directory, starts the node and listens.
    ///
    /// # Errors
    /// Any reason the server cannot run, as a message for the operator.
    pub fn start(config: ServerConfig) -> Result<Server, ServerError> {
        Ok(Server { _config: config })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self._config.listen
    }

    /// Drains, fsyncs and stops.
    pub fn shutdown(self) {}
}
