//! Command families, one file each, in the manner of Redis's `t_string.c` and friends. Every command parses its
//! arguments into a typed value before it touches data, then runs; each file ends with the table that binds
//! its command names to handlers, and [`handlers`] gathers them for the command table.

use shoal_protocol::ReplyWriter;

use crate::client::Client;
use crate::command::Command;
use crate::error::CmdResult;
use crate::keyspace::{Db, Now};
use crate::server::Server;

pub mod args;
pub mod client;
pub mod cluster;
pub mod connection;
pub mod expire;
pub mod introspect;
pub mod keys;
pub mod replication;
pub mod server;
pub mod strings;
#[cfg(test)]
pub mod testing;

/// What a handler works with.
pub struct Ctx<'a> {
    pub srv: &'a Server,
    pub client: &'a mut Client,
    pub out: &'a mut ReplyWriter,
    /// The command time: one clock reading per read batch.
    pub now: Now,
    pub cmd: &'a Command,
}

impl Ctx<'_> {
    /// The client's selected database.
    #[inline]
    pub fn db(&self) -> &Db {
        self.srv.keyspace.db(self.client.db)
    }

    /// The key `bytes` with its slot and hash, reusing the connection's if it computed them for this argument.
    #[inline]
    pub fn key<'k>(&self, bytes: &'k [u8]) -> crate::keyspace::Key<'k> {
        crate::keyspace::Key::with_hint(bytes, self.client.key_hint)
    }
}

/// A command handler: `args[0]` is the command name as sent.
pub type Handler = fn(&mut Ctx<'_>, &[&[u8]]) -> CmdResult;

/// Every command Shoal implements, by lower-case name (`container|sub` for subcommands).
pub fn handlers() -> Vec<(&'static str, Handler)> {
    let families: &[&[(&'static str, Handler)]] = &[
        connection::COMMANDS,
        client::COMMANDS,
        cluster::COMMANDS,
        server::COMMANDS,
        introspect::COMMANDS,
        strings::COMMANDS,
        keys::COMMANDS,
        expire::COMMANDS,
        replication::COMMANDS,
    ];
    families.iter().flat_map(|f| f.iter().copied()).collect()
}
