//! The cluster family: CLUSTER and its subcommands, READONLY, READWRITE and ASKING, with Redis 7.0's replies and
//! error texts (`clusterCommand` in `cluster.c`).
//!
//! The state lives in the `shoal_cluster` state machine behind the bus driver: changes go through
//! [`ClusterBus::with_node`] (which carries out the effects, `nodes.conf` first), queries through
//! [`ClusterBus::read`]. Refusals come from the state machine as [`ClusterError`]s whose `wire_text` is Redis's
//! reply. What only the server knows — how many keys a slot holds, whether the keyspace is empty — is read here
//! before the node is locked, because the bus driver takes shard locks while holding the node lock (it deletes
//! the keys of slots it loses), so this file never takes them the other way round.
//!
//! In standalone mode every subcommand (HELP and KEYSLOT too) and READONLY, READWRITE and ASKING answer
//! `ERR This instance has cluster support disabled`, as Redis 7.0 does.

use std::sync::Arc;

use shoal_cluster::{ClusterError, ClusterNode, FailoverMode, SetSlot, ShardNode, Slot, SlotsNode};

use super::{args, Ctx, Handler};
use crate::cluster_bus::ClusterBus;
use crate::error::{CmdError, CmdResult};
use crate::keyspace::access::unix_ms;

/// Redis's reply to every cluster command when cluster mode is off.
const DISABLED: &str = "ERR This instance has cluster support disabled";
/// Cluster mode is on but the bus has not started (only possible in unit tests or during startup).
const NO_BUS: &str = "ERR the cluster bus is not running";

/// Cluster mode is on; `Err` with Redis's text otherwise.
fn enabled(ctx: &Ctx<'_>) -> CmdResult {
    if ctx.srv.cluster_enabled() {
        Ok(())
    } else {
        Err(CmdError::Static(DISABLED))
    }
}

/// The running bus, after the cluster-mode check.
fn bus(ctx: &Ctx<'_>) -> Result<Arc<ClusterBus>, CmdError> {
    enabled(ctx)?;
    ctx.srv.cluster.get().cloned().ok_or(CmdError::Static(NO_BUS))
}

fn refused(e: ClusterError) -> CmdError {
    CmdError::Owned(e.wire_text())
}

fn now_ms() -> u64 {
    u64::try_from(unix_ms()).unwrap_or(0)
}

/// An argument as text for the state machine and for error messages that echo it (a node id that is not UTF-8
/// is unknown anyway).
fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// Redis's `getSlotOrReply`: an integer in 0..16384, else `ERR Invalid or out of range slot`.
fn slot_arg(arg: &[u8]) -> Option<Slot> {
    crate::num::parse_i64(arg)
        .and_then(|n| u32::try_from(n).ok())
        .and_then(Slot::new)
}

/// `ERR unknown subcommand or wrong number of arguments for '<sub>'. Try CLUSTER HELP.` (Redis's
/// `addReplySubcommandSyntaxError`, for subcommands whose argument count is checked by the subcommand itself).
fn subcommand_syntax_error(args: &[&[u8]]) -> CmdError {
    CmdError::Owned(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLUSTER HELP.",
        crate::error::truncate_lossy(args.get(1).copied().unwrap_or_default(), 128)
    ))
}

/// How many keys this node holds in `slot`, expired ones not yet collected included (Redis's
/// `countKeysInSlot`).
fn keys_in_slot(ctx: &Ctx<'_>, slot: Slot) -> usize {
    ctx.srv.keyspace.db(0).lock_slot(slot).slot_table(slot).len()
}

/// Whether database 0, the only one in cluster mode, holds no key.
fn db_is_empty(ctx: &Ctx<'_>) -> bool {
    ctx.srv.keyspace.db(0).is_empty()
}

// ---------------------------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------------------------

fn cluster_help(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    const LINES: &[&str] = &[
        "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ADDSLOTS <slot> [<slot> ...]",
        "    Assign slots to current node.",
        "ADDSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
        "    Assign slots which are between <start-slot> and <end-slot> to current node.",
        "BUMPEPOCH",
        "    Advance the cluster config epoch.",
        "COUNT-FAILURE-REPORTS <node-id>",
        "    Return number of failure reports for <node-id>.",
        "COUNTKEYSINSLOT <slot>",
        "    Return the number of keys in <slot>.",
        "DELSLOTS <slot> [<slot> ...]",
        "    Delete slots information from current node.",
        "DELSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
        "    Delete slots information which are between <start-slot> and <end-slot> from current node.",
        "FAILOVER [FORCE|TAKEOVER]",
        "    Promote current replica node to being a master.",
        "FORGET <node-id>",
        "    Remove a node from the cluster.",
        "GETKEYSINSLOT <slot> <count>",
        "    Return key names stored by current node in a slot.",
        "FLUSHSLOTS",
        "    Delete current node own slots information.",
        "INFO",
        "    Return information about the cluster.",
        "KEYSLOT <key>",
        "    Return the hash slot for <key>.",
        "MEET <ip> <port> [<bus-port>]",
        "    Connect nodes into a working cluster.",
        "MYID",
        "    Return the node id.",
        "NODES",
        "    Return cluster configuration seen by node. Output format:",
        "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
        "REPLICATE <node-id>",
        "    Configure current node as replica to <node-id>.",
        "RESET [HARD|SOFT]",
        "    Reset current node (default: soft).",
        "SET-CONFIG-EPOCH <epoch>",
        "    Set config epoch of current node.",
        "SETSLOT <slot> (IMPORTING <node-id>|MIGRATING <node-id>|STABLE|NODE <node-id>)",
        "    Set slot state.",
        "REPLICAS <node-id>",
        "    Return <node-id> replicas.",
        "SAVECONFIG",
        "    Force saving cluster configuration on disk.",
        "SLOTS",
        "    Return information about slots range mappings. Each range is made of:",
        "    start, end, master and replicas IP addresses, ports and ids",
        "SHARDS",
        "    Return information about slot range mappings and the nodes associated with them.",
        "LINKS",
        "    Return information about all network links between this node and its peers.",
        "    Output format is an array where each array element is a map containing attributes of a link",
        "HELP",
        "    Prints this help.",
    ];
    ctx.out.array(LINES.len());
    for line in LINES {
        ctx.out.simple(line.as_bytes());
    }
    Ok(())
}

fn cluster_info(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let text = bus(ctx)?.read(ClusterNode::cluster_info_text);
    ctx.out.verbatim(b"txt", text.as_bytes());
    Ok(())
}

fn cluster_myid(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let id = bus(ctx)?.read(|n| n.my_id().to_string());
    ctx.out.bulk(id.as_bytes());
    Ok(())
}

/// `CLUSTER MYSHARDID` (Redis 7.2; its metadata is in `commands-extra.json`).
fn cluster_myshardid(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let id = bus(ctx)?.read(|n| n.my_shard_id().to_string());
    ctx.out.bulk(id.as_bytes());
    Ok(())
}

fn cluster_nodes(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let text = bus(ctx)?.read(ClusterNode::cluster_nodes_text);
    ctx.out.verbatim(b"txt", text.as_bytes());
    Ok(())
}

/// A node of a CLUSTER SLOTS entry: `[ip, port, id, {hostname?}]` (the map is empty unless a hostname is
/// announced, the preferred endpoint being the IP).
fn write_slots_node(ctx: &mut Ctx<'_>, node: &SlotsNode) {
    ctx.out.array(4);
    ctx.out.bulk(node.ip.as_bytes());
    ctx.out.integer(i64::from(node.port));
    ctx.out.bulk(node.id.to_string().as_bytes());
    match &node.hostname {
        Some(h) if !h.is_empty() => {
            ctx.out.map(1);
            ctx.out.bulk(b"hostname");
            ctx.out.bulk(h.as_bytes());
        }
        _ => ctx.out.map(0),
    }
}

fn cluster_slots(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let entries = bus(ctx)?.read(ClusterNode::cluster_slots);
    ctx.out.array(entries.len());
    for e in &entries {
        ctx.out.array(2 + e.nodes.len());
        ctx.out.integer(i64::from(e.start.get()));
        ctx.out.integer(i64::from(e.end.get()));
        for n in &e.nodes {
            write_slots_node(ctx, n);
        }
    }
    Ok(())
}

/// A node of a CLUSTER SHARDS entry, a map in Redis's key order (`addNodeDetailsToShardReply`).
fn write_shard_node(ctx: &mut Ctx<'_>, node: &ShardNode) {
    let hostname = node.hostname.as_deref().filter(|h| !h.is_empty());
    // A port of 0 (not known yet) is left out, as Redis leaves out a zero plaintext port.
    let fields = 6 + usize::from(node.port != 0) + usize::from(hostname.is_some());
    let out = &mut *ctx.out;
    out.map(fields);
    out.bulk(b"id");
    out.bulk(node.id.to_string().as_bytes());
    if node.port != 0 {
        out.bulk(b"port");
        out.integer(i64::from(node.port));
    }
    out.bulk(b"ip");
    out.bulk(node.ip.as_bytes());
    out.bulk(b"endpoint");
    out.bulk(node.endpoint.as_bytes());
    if let Some(h) = hostname {
        out.bulk(b"hostname");
        out.bulk(h.as_bytes());
    }
    out.bulk(b"role");
    out.bulk(node.role.as_bytes());
    out.bulk(b"replication-offset");
    out.integer(i64::try_from(node.replication_offset).unwrap_or(i64::MAX));
    out.bulk(b"health");
    out.bulk(node.health.as_bytes());
}

fn cluster_shards(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let shards = bus(ctx)?.read(ClusterNode::cluster_shards);
    ctx.out.array(shards.len());
    for shard in &shards {
        ctx.out.map(2);
        ctx.out.bulk(b"slots");
        ctx.out.array(shard.slots.len() * 2);
        for r in &shard.slots {
            ctx.out.integer(i64::from(r.start));
            ctx.out.integer(i64::from(r.end));
        }
        ctx.out.bulk(b"nodes");
        ctx.out.array(shard.nodes.len());
        for n in &shard.nodes {
            write_shard_node(ctx, n);
        }
    }
    Ok(())
}

fn cluster_links(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let links = bus(ctx)?.read(ClusterNode::cluster_links);
    let out = &mut *ctx.out;
    out.array(links.len());
    for l in &links {
        out.map(6);
        out.bulk(b"direction");
        out.bulk(l.direction.as_str().as_bytes());
        out.bulk(b"node");
        out.bulk(l.node.to_string().as_bytes());
        out.bulk(b"create-time");
        out.integer(i64::try_from(l.created_ms).unwrap_or(i64::MAX));
        // The driver writes through an unbounded channel drained by a task of its own: a link is always
        // readable and never waits on a send buffer of the kind Redis reports, so these are Redis's idle values.
        out.bulk(b"events");
        out.bulk(b"r");
        out.bulk(b"send-buffer-allocated");
        out.integer(0);
        out.bulk(b"send-buffer-used");
        out.integer(0);
    }
    Ok(())
}

fn cluster_keyslot(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    ctx.out.integer(i64::from(Slot::for_key(args[2]).get()));
    Ok(())
}

fn cluster_countkeysinslot(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    let n = args::int(args[2])?;
    let slot = u32::try_from(n)
        .ok()
        .and_then(Slot::new)
        .ok_or_else(|| refused(ClusterError::InvalidSlotNumber))?;
    let count = keys_in_slot(ctx, slot);
    ctx.out.integer(i64::try_from(count).unwrap_or(i64::MAX));
    Ok(())
}

fn cluster_getkeysinslot(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    let n = args::int(args[2])?;
    let max = args::int(args[3])?;
    let (Some(slot), Ok(max)) = (u32::try_from(n).ok().and_then(Slot::new), usize::try_from(max)) else {
        return Err(refused(ClusterError::InvalidSlotOrCount));
    };
    let shard = ctx.srv.keyspace.db(0).lock_slot(slot);
    let table = shard.slot_table(slot);
    let count = table.len().min(max);
    ctx.out.array(count);
    for e in table.iter().take(count) {
        ctx.out.bulk(e.key());
    }
    Ok(())
}

fn cluster_count_failure_reports(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let id = text(args[2]);
    let n = bus(ctx)?
        .with_node(|n| n.count_failure_reports(&id, now_ms()))
        .map_err(refused)?;
    ctx.out.integer(i64::try_from(n).unwrap_or(i64::MAX));
    Ok(())
}

/// CLUSTER REPLICAS and its old name SLAVES: the replicas' CLUSTER NODES lines, without newlines.
fn cluster_replicas(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let id = text(args[2]);
    let lines = bus(ctx)?.read(|n| n.replicas_text(&id)).map_err(refused)?;
    ctx.out.array(lines.len());
    for l in &lines {
        ctx.out.bulk(l.as_bytes());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration changes
// ---------------------------------------------------------------------------------------------------------------

fn cluster_meet(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    // Redis matches MEET with 4 or 5 arguments only; the metadata's arity (-4) lets more through.
    if args.len() > 5 {
        return Err(subcommand_syntax_error(args));
    }
    let bus = bus(ctx)?;
    let port = crate::num::parse_i64(args[3]).ok_or_else(|| refused(ClusterError::InvalidBasePort(text(args[3]))))?;
    let bus_port = match args.get(4) {
        Some(a) => Some(crate::num::parse_i64(a).ok_or_else(|| refused(ClusterError::InvalidBusPort(text(a))))?),
        None => None,
    };
    let ip = text(args[2]);
    bus.with_node(|n| n.meet(&ip, port, bus_port, now_ms()))
        .map_err(refused)?;
    ctx.out.ok();
    Ok(())
}

fn cluster_addslots(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    change_slots(ctx, args, false)
}

fn cluster_delslots(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    change_slots(ctx, args, true)
}

/// ADDSLOTS / DELSLOTS: every argument is parsed before any slot is checked (Redis's order).
fn change_slots(ctx: &mut Ctx<'_>, args: &[&[u8]], del: bool) -> CmdResult {
    let bus = bus(ctx)?;
    let slots = args[2..]
        .iter()
        .map(|a| slot_arg(a))
        .collect::<Option<Vec<Slot>>>()
        .ok_or_else(|| refused(ClusterError::InvalidSlot))?;
    bus.with_node(|n| if del { n.del_slots(&slots) } else { n.add_slots(&slots) })
        .map_err(refused)?;
    ctx.out.ok();
    Ok(())
}

fn cluster_addslotsrange(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    change_slot_ranges(ctx, args, false)
}

fn cluster_delslotsrange(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    change_slot_ranges(ctx, args, true)
}

/// ADDSLOTSRANGE / DELSLOTSRANGE: pairs, each parsed and checked in turn (the state machine does the order).
fn change_slot_ranges(ctx: &mut Ctx<'_>, args: &[&[u8]], del: bool) -> CmdResult {
    enabled(ctx)?;
    if args.len() % 2 == 1 {
        return Err(CmdError::WrongArity(ctx.cmd.name.clone()));
    }
    let bus = bus(ctx)?;
    let ranges: Vec<(Option<Slot>, Option<Slot>)> = args[2..]
        .chunks_exact(2)
        .map(|pair| (slot_arg(pair[0]), slot_arg(pair[1])))
        .collect();
    bus.with_node(|n| {
        if del {
            n.del_slot_ranges(&ranges)
        } else {
            n.add_slot_ranges(&ranges)
        }
    })
    .map_err(refused)?;
    ctx.out.ok();
    Ok(())
}

fn cluster_flushslots(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let bus = bus(ctx)?;
    let empty = db_is_empty(ctx);
    bus.with_node(|n| n.flush_slots(empty)).map_err(refused)?;
    ctx.out.ok();
    Ok(())
}

/// Redis 7.0 refuses a replica as the target of SETSLOT MIGRATING / IMPORTING / NODE, after the checks that
/// come before it; the state machine has no such check, so it is made here, on the same locked node.
fn setslot_target_is_replica(n: &ClusterNode, slot: Option<Slot>, action: Option<SetSlot<'_>>) -> bool {
    let (Some(slot), Some(action)) = (slot, action) else {
        return false;
    };
    if n.is_replica() {
        return false;
    }
    let mine = n.slot_owner(slot).is_some_and(|o| o.id == n.my_id());
    let id = match action {
        SetSlot::Migrating(id) if mine => id,
        SetSlot::Importing(id) if !mine => id,
        SetSlot::Node { id, .. } => id,
        _ => return false,
    };
    n.lookup(id).is_some_and(|t| t.is_replica())
}

fn cluster_setslot(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let bus = bus(ctx)?;
    let slot = slot_arg(args[2]);
    let id = args.get(4).map(|a| text(a));
    let keys = match slot {
        Some(s) if args.len() == 5 && args::is(args[3], "node") => keys_in_slot(ctx, s) as u64,
        _ => 0,
    };
    let action = match (args.len(), id.as_deref()) {
        (5, Some(id)) if args::is(args[3], "migrating") => Some(SetSlot::Migrating(id)),
        (5, Some(id)) if args::is(args[3], "importing") => Some(SetSlot::Importing(id)),
        (5, Some(id)) if args::is(args[3], "node") => Some(SetSlot::Node { id, keys_in_slot: keys }),
        (4, _) if args::is(args[3], "stable") => Some(SetSlot::Stable),
        _ => None,
    };
    bus.with_node(|n| {
        if setslot_target_is_replica(n, slot, action) {
            return Err(CmdError::Static("ERR Target node is not a master"));
        }
        n.set_slot(slot, action).map_err(refused)
    })?;
    ctx.out.ok();
    Ok(())
}

fn cluster_bumpepoch(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let (bumped, epoch) = bus(ctx)?.with_node(|n| n.bump_epoch());
    let reply = format!("{} {}", if bumped { "BUMPED" } else { "STILL" }, epoch.get());
    ctx.out.simple(reply.as_bytes());
    Ok(())
}

fn cluster_set_config_epoch(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let bus = bus(ctx)?;
    let epoch = args::int(args[2])?;
    bus.with_node(|n| n.set_config_epoch(epoch)).map_err(refused)?;
    ctx.out.ok();
    Ok(())
}

fn cluster_forget(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let id = text(args[2]);
    bus(ctx)?.with_node(|n| n.forget(&id, now_ms())).map_err(refused)?;
    ctx.out.ok();
    Ok(())
}

fn cluster_replicate(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let bus = bus(ctx)?;
    let id = text(args[2]);
    let empty = db_is_empty(ctx);
    bus.with_node(|n| n.replicate(&id, empty)).map_err(refused)?;
    ctx.out.ok();
    Ok(())
}

fn cluster_reset(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    // Redis matches RESET with 2 or 3 arguments only; the metadata's arity (-2) lets more through.
    if args.len() > 3 {
        return Err(subcommand_syntax_error(args));
    }
    let bus = bus(ctx)?;
    let hard = match args.get(2) {
        None => false,
        Some(a) if args::is(a, "hard") => true,
        Some(a) if args::is(a, "soft") => false,
        Some(_) => return Err(CmdError::syntax()),
    };
    let empty = db_is_empty(ctx);
    let was_replica = bus
        .with_node(|n| {
            let was_replica = n.is_replica();
            n.reset(hard, empty).map(|()| was_replica)
        })
        .map_err(refused)?;
    if was_replica {
        // A replica is reset with whatever it holds, and starts over empty (Redis's clusterReset: emptyData).
        let taken = ctx.srv.keyspace.take_all();
        ctx.srv.evictor.clear();
        drop(taken);
    }
    ctx.out.ok();
    Ok(())
}

/// CLUSTER FAILOVER [FORCE|TAKEOVER]: hands the request to the state machine, which checks Redis's
/// preconditions (a replica, a known primary, a live one unless FORCE or TAKEOVER) and runs the failover in the
/// background; OK means it is under way, as in Redis.
fn cluster_failover(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    if args.len() > 3 {
        return Err(subcommand_syntax_error(args));
    }
    let bus = bus(ctx)?;
    let mode = match args.get(2) {
        None => FailoverMode::Default,
        Some(a) if args::is(a, "force") => FailoverMode::Force,
        Some(a) if args::is(a, "takeover") => FailoverMode::Takeover,
        Some(_) => return Err(CmdError::syntax()),
    };
    let now = crate::keyspace::access::unix_ms() as u64;
    bus.with_node(|n| n.failover(mode, now)).map_err(refused)?;
    ctx.out.ok();
    Ok(())
}

/// CLUSTER SAVECONFIG: writes `nodes.conf` now, atomically and fsynced, through the driver (ordered with its own
/// saves by the node lock).
fn cluster_saveconfig(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    bus(ctx)?.save_config().map_err(|e| {
        // Redis writes strerror(errno); Rust appends " (os error N)" to the same text.
        let msg = e.to_string();
        let msg = msg.split(" (os error").next().unwrap_or(&msg).to_owned();
        refused(ClusterError::SaveConfigFailed(msg))
    })?;
    ctx.out.ok();
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Connection flags
// ---------------------------------------------------------------------------------------------------------------

/// READONLY: this connection may read keys of its primary's slots from a replica.
fn readonly(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    ctx.client.readonly = true;
    ctx.out.ok();
    Ok(())
}

fn readwrite(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    ctx.client.readonly = false;
    ctx.out.ok();
    Ok(())
}

/// ASKING: the next command may use a slot this node is importing. The gate clears the flag after it.
fn asking(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    ctx.client.asking = true;
    ctx.out.ok();
    Ok(())
}

pub const COMMANDS: &[(&str, Handler)] = &[
    ("cluster|help", cluster_help),
    ("cluster|info", cluster_info),
    ("cluster|myid", cluster_myid),
    ("cluster|myshardid", cluster_myshardid),
    ("cluster|nodes", cluster_nodes),
    ("cluster|slots", cluster_slots),
    ("cluster|shards", cluster_shards),
    ("cluster|links", cluster_links),
    ("cluster|keyslot", cluster_keyslot),
    ("cluster|countkeysinslot", cluster_countkeysinslot),
    ("cluster|getkeysinslot", cluster_getkeysinslot),
    ("cluster|count-failure-reports", cluster_count_failure_reports),
    ("cluster|replicas", cluster_replicas),
    ("cluster|slaves", cluster_replicas),
    ("cluster|meet", cluster_meet),
    ("cluster|addslots", cluster_addslots),
    ("cluster|addslotsrange", cluster_addslotsrange),
    ("cluster|delslots", cluster_delslots),
    ("cluster|delslotsrange", cluster_delslotsrange),
    ("cluster|flushslots", cluster_flushslots),
    ("cluster|setslot", cluster_setslot),
    ("cluster|bumpepoch", cluster_bumpepoch),
    ("cluster|set-config-epoch", cluster_set_config_epoch),
    ("cluster|forget", cluster_forget),
    ("cluster|replicate", cluster_replicate),
    ("cluster|reset", cluster_reset),
    ("cluster|failover", cluster_failover),
    ("cluster|saveconfig", cluster_saveconfig),
    ("readonly", readonly),
    ("readwrite", readwrite),
    ("asking", asking),
];

#[cfg(test)]
mod tests {
    use shoal_protocol::Frame;

    use crate::cmd::testing::{render, TestClient};

    fn cluster_client() -> TestClient {
        let c = TestClient::with_config(|c| c.cluster_enabled = true);
        c.own_all_slots();
        c
    }

    #[test]
    fn standalone_refuses_every_cluster_command() {
        let mut c = TestClient::new();
        for cmd in [
            &["CLUSTER", "HELP"][..],
            &["CLUSTER", "INFO"],
            &["CLUSTER", "KEYSLOT", "foo"],
            &["CLUSTER", "NODES"],
            &["CLUSTER", "SLOTS"],
            &["CLUSTER", "COUNTKEYSINSLOT", "1"],
            &["CLUSTER", "ADDSLOTS", "1"],
            &["CLUSTER", "ADDSLOTSRANGE", "1", "2"],
            &["CLUSTER", "MEET", "127.0.0.1", "7000"],
            &["CLUSTER", "MEET", "127.0.0.1", "7000", "17000", "x"],
            &["CLUSTER", "RESET", "SOFT", "x"],
            &["CLUSTER", "RESET", "HARD"],
            &["READONLY"],
            &["READWRITE"],
            &["ASKING"],
        ] {
            assert_eq!(
                c.text(cmd),
                "-ERR This instance has cluster support disabled",
                "{cmd:?}"
            );
        }
        // Lookup and arity come first, as in Redis.
        assert_eq!(
            c.text(&["CLUSTER", "FOO"]),
            "-ERR unknown subcommand 'FOO'. Try CLUSTER HELP."
        );
        // MYSHARDID (Redis 7.2) exists here and is refused like the others in standalone mode.
        assert_eq!(
            c.text(&["CLUSTER", "MYSHARDID"]),
            "-ERR This instance has cluster support disabled"
        );
        assert_eq!(
            c.text(&["CLUSTER"]),
            "-ERR wrong number of arguments for 'cluster' command"
        );
        assert!(!c.client.readonly && !c.client.asking);
    }

    #[test]
    fn keyslot_hashes_tags_like_redis() {
        let mut c = cluster_client();
        assert_eq!(c.text(&["CLUSTER", "KEYSLOT", "foo"]), "12182");
        assert_eq!(c.text(&["CLUSTER", "KEYSLOT", "{a}b"]), "15495");
        assert_eq!(c.text(&["cluster", "keyslot", "x"]), "16287");
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(c.text(&["CLUSTER", "KEYSLOT", "{}x"]), "10595");
        assert_eq!(c.text(&["CLUSTER", "KEYSLOT", "{user1000}.following"]), "3443");
        assert_eq!(c.text(&["CLUSTER", "KEYSLOT", "{user1000}.followers"]), "3443");
    }

    #[test]
    fn counts_and_lists_keys_of_a_slot() {
        let mut c = cluster_client();
        for k in ["{t}a", "{t}b", "{t}c", "other"] {
            assert_eq!(c.text(&["SET", k, "v"]), "OK");
        }
        let slot = c.text(&["CLUSTER", "KEYSLOT", "{t}"]);
        assert_eq!(c.text(&["CLUSTER", "COUNTKEYSINSLOT", &slot]), "3");
        let two = c.text(&["CLUSTER", "GETKEYSINSLOT", &slot, "2"]);
        assert_eq!(two.matches("{t}").count(), 2, "{two}");
        let mut all = c.text(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
        all.retain(|ch| ch != '[' && ch != ']');
        let mut keys: Vec<&str> = all.split(", ").collect();
        keys.sort_unstable();
        assert_eq!(keys, ["{t}a", "{t}b", "{t}c"]);
        assert_eq!(c.text(&["CLUSTER", "GETKEYSINSLOT", &slot, "0"]), "[]");
        assert_eq!(c.text(&["CLUSTER", "COUNTKEYSINSLOT", "0"]), "0");
    }

    #[test]
    fn slot_argument_errors_match_redis() {
        let mut c = cluster_client();
        assert_eq!(c.text(&["CLUSTER", "COUNTKEYSINSLOT", "16384"]), "-ERR Invalid slot");
        assert_eq!(c.text(&["CLUSTER", "COUNTKEYSINSLOT", "-1"]), "-ERR Invalid slot");
        assert_eq!(
            c.text(&["CLUSTER", "COUNTKEYSINSLOT", "abc"]),
            "-ERR value is not an integer or out of range"
        );
        assert_eq!(
            c.text(&["CLUSTER", "GETKEYSINSLOT", "1", "-1"]),
            "-ERR Invalid slot or number of keys"
        );
        assert_eq!(
            c.text(&["CLUSTER", "GETKEYSINSLOT", "16384", "1"]),
            "-ERR Invalid slot or number of keys"
        );
        assert_eq!(
            c.text(&["CLUSTER", "GETKEYSINSLOT", "x", "1"]),
            "-ERR value is not an integer or out of range"
        );
        assert_eq!(
            c.text(&["CLUSTER", "GETKEYSINSLOT", "1", "x"]),
            "-ERR value is not an integer or out of range"
        );
    }

    #[test]
    fn argument_count_errors_come_before_the_bus() {
        let mut c = cluster_client();
        assert_eq!(
            c.text(&["CLUSTER", "ADDSLOTSRANGE", "30", "40", "50"]),
            "-ERR wrong number of arguments for 'cluster|addslotsrange' command"
        );
        assert_eq!(
            c.text(&["CLUSTER", "MEET", "127.0.0.1", "5", "6", "7"]),
            "-ERR unknown subcommand or wrong number of arguments for 'MEET'. Try CLUSTER HELP."
        );
        assert_eq!(
            c.text(&["cluster", "reset", "soft", "x"]),
            "-ERR unknown subcommand or wrong number of arguments for 'reset'. Try CLUSTER HELP."
        );
        assert_eq!(
            c.text(&["CLUSTER", "FLUSHSLOTS", "x"]),
            "-ERR wrong number of arguments for 'cluster|flushslots' command"
        );
        // Without a running bus the rest cannot go on; it says so rather than pretending.
        assert_eq!(c.text(&["CLUSTER", "INFO"]), "-ERR the cluster bus is not running");
    }

    #[test]
    fn help_lists_redis_7_0_subcommands() {
        let mut c = cluster_client();
        let Frame::Array(lines) = c.call(&["CLUSTER", "HELP"]) else {
            panic!("CLUSTER HELP is not an array")
        };
        assert_eq!(lines.len(), 56);
        assert_eq!(
            render(&lines[0]),
            "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
        );
        assert_eq!(render(&lines[55]), "    Prints this help.");
        assert!(lines.iter().all(|l| matches!(l, Frame::Simple(_))));
    }

    #[test]
    fn readonly_readwrite_and_asking_set_connection_flags() {
        let mut c = cluster_client();
        assert_eq!(c.text(&["READONLY"]), "OK");
        assert!(c.client.readonly);
        assert_eq!(c.text(&["READWRITE"]), "OK");
        assert!(!c.client.readonly);
        assert_eq!(c.text(&["ASKING"]), "OK");
        assert!(c.client.asking);
        // ASKING covers the next command only.
        assert_eq!(c.text(&["GET", "k"]), "(nil)");
        assert!(!c.client.asking);
    }
}
