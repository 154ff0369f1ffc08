//! Command errors and their one mapping to wire text.
//!
//! Clients parse error codes (`WRONGTYPE`, `NOAUTH`, `OOM`, `MOVED` ...) and many match whole texts, so every
//! text is a constant here, spelled exactly as Redis 7.0 spells it. A handler returns a [`CmdError`]; the
//! dispatcher writes it and counts it in `errorstats` under its code (the first word).

use std::borrow::Cow;

pub const SYNTAX: &str = "ERR syntax error";
pub const WRONG_TYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const NOT_FLOAT: &str = "ERR value is not a valid float";
pub const NO_SUCH_KEY: &str = "ERR no such key";
pub const NOAUTH: &str = "NOAUTH Authentication required.";
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";
pub const DB_INDEX_OUT_OF_RANGE: &str = "ERR DB index is out of range";
pub const INVALID_EXPIRE: &str = "ERR invalid expire time in '%s' command";
pub const MAX_CLIENTS: &str = "ERR max number of clients reached";
pub const STRING_TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
pub const OFFSET_OUT_OF_RANGE: &str = "ERR offset is out of range";
pub const SAME_OBJECT: &str = "ERR source and destination objects are the same";
pub const INCR_OVERFLOW: &str = "ERR increment or decrement would overflow";
pub const NO_SUCH_CLIENT: &str = "ERR No such client";
pub const DEBUG_DISABLED: &str = "ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.";
pub const SELECT_IN_CLUSTER: &str = "ERR SELECT is not allowed in cluster mode";
pub const READONLY: &str = "READONLY You can't write against a read only replica.";
pub const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";
pub const NOMASTERLINK: &str = "NOMASTERLINK Can't SYNC while not connected with my master";
pub const WAIT_ON_REPLICA: &str = "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.";
pub const REPLICAOF_IN_CLUSTER: &str = "ERR REPLICAOF not allowed in cluster mode.";
pub const INVALID_MASTER_PORT: &str = "ERR Invalid master port";

/// A command's failure, written to the client as one error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdError {
    /// A fixed text from this module (or any static text), code first.
    Static(&'static str),
    /// A text built at run time, code first.
    Owned(String),
    /// `ERR wrong number of arguments for '<name>' command`.
    WrongArity(String),
}

pub type CmdResult = Result<(), CmdError>;

impl CmdError {
    pub fn msg(s: impl Into<Cow<'static, str>>) -> CmdError {
        match s.into() {
            Cow::Borrowed(s) => CmdError::Static(s),
            Cow::Owned(s) => CmdError::Owned(s),
        }
    }

    /// `ERR <text>`.
    pub fn err(text: impl std::fmt::Display) -> CmdError {
        CmdError::Owned(format!("ERR {text}"))
    }

    pub fn syntax() -> CmdError {
        CmdError::Static(SYNTAX)
    }

    pub fn wrong_type() -> CmdError {
        CmdError::Static(WRONG_TYPE)
    }

    pub fn not_integer() -> CmdError {
        CmdError::Static(NOT_INTEGER)
    }

    pub fn not_float() -> CmdError {
        CmdError::Static(NOT_FLOAT)
    }

    /// `ERR unknown subcommand '<sub>'. Try <CMD> HELP.`
    pub fn unknown_subcommand(cmd: &str, sub: &[u8]) -> CmdError {
        CmdError::Owned(format!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            truncate_lossy(sub, 128),
            cmd.to_ascii_uppercase()
        ))
    }

    /// `ERR invalid expire time in '<cmd>' command`.
    pub fn invalid_expire(cmd: &str) -> CmdError {
        CmdError::Owned(INVALID_EXPIRE.replace("%s", cmd))
    }

    /// The full error text, code first.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            CmdError::Static(s) => Cow::Borrowed(s),
            CmdError::Owned(s) => Cow::Borrowed(s.as_str()),
            CmdError::WrongArity(name) => Cow::Owned(format!("ERR wrong number of arguments for '{name}' command")),
        }
    }

    /// The error code counted in `errorstats` (`ERR`, `WRONGTYPE`, ...).
    pub fn code(&self) -> String {
        let t = self.text();
        t.split(' ').next().unwrap_or("ERR").to_string()
    }
}

impl std::fmt::Display for CmdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// Bytes as text for an error message, at most `max` bytes, invalid UTF-8 replaced.
pub fn truncate_lossy(b: &[u8], max: usize) -> Cow<'_, str> {
    String::from_utf8_lossy(&b[..b.len().min(max)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_first_word() {
        assert_eq!(CmdError::wrong_type().code(), "WRONGTYPE");
        assert_eq!(CmdError::WrongArity("get".into()).code(), "ERR");
        assert_eq!(CmdError::Static(OOM).code(), "OOM");
    }

    #[test]
    fn arity_text_names_the_command() {
        assert_eq!(
            CmdError::WrongArity("client|kill".into()).text(),
            "ERR wrong number of arguments for 'client|kill' command"
        );
    }

    #[test]
    fn unknown_subcommand_uppercases_the_container() {
        assert_eq!(
            CmdError::unknown_subcommand("client", b"foo").text(),
            "ERR unknown subcommand 'foo'. Try CLIENT HELP."
        );
    }
}
