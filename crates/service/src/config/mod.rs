//! `ringraft-server`'s settings: the [`ServerConfig`] the server runs with and
//! how it is assembled from the command line, the environment and a TOML file.
//!
//! Every setting is a *key* (`election_timeout_min_ms`). A key can be given
//! three ways, and the first one found wins:
//!
//! 1. a flag, the key in kebab-case: `--election-timeout-min-ms 250`;
//! 2. an environment variable, `RINGRAFT_` and the key in upper case:
//!    `RINGRAFT_ELECTION_TIMEOUT_MIN_MS=250` (an empty variable counts as unset);
//! 3. the TOML file named by `--config FILE` or `RINGRAFT_CONFIG`:
//!    `election_timeout_min_ms = 250`;
//!
//! and otherwise the default. Each key is resolved on its own, so a file can
//! set `listen` while the environment overrides only `node_id`. Secrets are
//! never values: the three tokens are given as *files* (`peer_token_file`),
//! because argv and the environment show up in `ps` and in crash reports.
//! Relative paths are relative to the process's working directory.
//!
//! Cross-key rules (timeouts, peers, modes) live in [`ServerConfig::validate`],
//! which also runs on a config built in code with [`ServerConfig::new`].

mod keys;
mod load;
mod model;

pub use load::help_text;
pub use model::*;
