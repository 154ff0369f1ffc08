//! Unit tests of the state machine: one node, fed hand-made messages. (Whole clusters are in `sim/tests.rs`.)

use std::net::IpAddr;

use super::*;
use crate::config_file::NodesFile;
use crate::error::ClusterError;
use crate::message::{GossipEntry, MFLAG_SENDER_UNKNOWN};
use crate::node::FailureReport;

const NOW: u64 = 1_700_000_000_000;
const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
const D: &str = "dddddddddddddddddddddddddddddddddddddddd";
const E: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

fn id(text: &str) -> NodeId {
    NodeId::parse(text).unwrap()
}

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn slot(n: u32) -> Slot {
    Slot::new(n).unwrap()
}

fn fresh() -> ClusterNode {
    let mut node = ClusterNode::new(ClusterConfig::new(30001), 1, NOW);
    node.take_effects();
    node
}

/// Node A (myself) with primaries B, C, D and E, a replica of B. Slots: A 0-4095, B 4096-8191, C 8192-12287,
/// D 12288-16383. D has a ping pending since the load, so a tick after the timeout flags it PFAIL.
fn four_primaries() -> ClusterNode {
    let text = format!(
        "{A} 10.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-4095\n\
         {B} 10.0.0.2:30002@40002 master - 0 {NOW} 2 connected 4096-8191\n\
         {C} 10.0.0.3:30003@40003 master - 0 {NOW} 3 connected 8192-12287\n\
         {D} 10.0.0.4:30004@40004 master - {NOW} {NOW} 4 connected 12288-16383\n\
         {E} 10.0.0.5:30005@40005 slave {B} 0 {NOW} 2 connected\n\
         vars currentEpoch 4 lastVoteEpoch 0\n"
    );
    let file = NodesFile::parse(&text).unwrap();
    let mut config = ClusterConfig::new(30001);
    config.node_timeout_ms = 2_000;
    let mut node = ClusterNode::from_nodes_file(config, &file, 7, NOW).unwrap();
    node.take_effects();
    node
}

/// A message as `sender` would send it, claiming `slots` under `config_epoch`.
fn message(sender: &str, config_epoch: u64, slots: SlotRanges, primary: Option<&str>, body: Body) -> Message {
    Message {
        header: Header {
            sender: id(sender),
            current_epoch: Epoch(config_epoch.max(4)),
            config_epoch: Epoch(config_epoch),
            flags: if primary.is_some() {
                NodeFlags::REPLICA
            } else {
                NodeFlags::PRIMARY
            },
            primary: primary.map(id),
            slots,
            ip: None,
            port: 0,
            bus_port: 0,
            hostname: None,
            shard_id: ShardId::from_bytes([7; 20]),
            repl_offset: 0,
            cluster_ok: true,
            mflags: 0,
        },
        body,
    }
}

/// A PING from one of the primaries of [`four_primaries`], with its own address and slots.
fn ping_from(node: &ClusterNode, sender: &str, gossip: Vec<GossipEntry>) -> Message {
    let info = node.lookup(sender).unwrap();
    let mut msg = message(
        sender,
        info.config_epoch.get(),
        info.slots.clone(),
        None,
        Body::Ping(gossip),
    );
    msg.header.port = info.port;
    msg.header.bus_port = info.bus_port;
    msg.header.ip = info.ip;
    if info.is_replica() {
        msg.header.flags = NodeFlags::REPLICA;
        msg.header.primary = info.primary;
    }
    msg
}

fn gossip_about(node: &ClusterNode, about: &str, flags: NodeFlags) -> GossipEntry {
    let info = node.lookup(about).unwrap();
    GossipEntry {
        id: info.id,
        ip: info.ip,
        port: info.port,
        bus_port: info.bus_port,
        flags: info.flags.union(flags),
        ping_sent_s: 0,
        pong_received_s: 0,
    }
}

fn sends(effects: &[Effect]) -> Vec<(LinkId, &Message)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { link, msg } => Some((*link, msg)),
            _ => None,
        })
        .collect()
}

/// Connects every node of the table (as the driver would) and returns the links by node.
fn connect_all(node: &mut ClusterNode, now: u64) -> BTreeMap<NodeId, LinkId> {
    let effects = node.on_tick(now);
    let mut links = BTreeMap::new();
    for effect in effects {
        if let Effect::Connect { link, .. } = effect {
            let target = node.link_node(link).unwrap();
            node.on_link_connected(link, now);
            links.insert(target, link);
        }
    }
    links
}

// ---- Output formats --------------------------------------------------------------------------------------

#[test]
fn a_fresh_node_lists_only_itself_as_redis_does() {
    let node = fresh();
    assert_eq!(
        node.cluster_nodes_text(),
        format!("{} :30001@40001 myself,master - 0 0 0 connected\n", node.my_id())
    );
}

#[test]
fn a_fresh_node_reports_cluster_info_as_redis_does() {
    let node = fresh();
    assert_eq!(
        node.cluster_info_text(),
        "cluster_state:fail\r\ncluster_slots_assigned:0\r\ncluster_slots_ok:0\r\ncluster_slots_pfail:0\r\n\
         cluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:1\r\ncluster_current_epoch:0\r\n\
         cluster_my_epoch:0\r\ncluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n\
         total_cluster_links_buffer_limit_exceeded:0\r\n"
    );
}

#[test]
fn a_fresh_node_saves_its_config_first() {
    let mut node = ClusterNode::new(ClusterConfig::new(30001), 1, NOW);
    assert_eq!(node.take_effects(), vec![Effect::SaveConfig]);
    let text = node.nodes_conf_text();
    assert!(text.starts_with(&node.my_id().to_string()));
    assert!(text.ends_with("vars currentEpoch 0 lastVoteEpoch 0\n"));
}

#[test]
fn cluster_nodes_lines_show_replicas_with_their_primarys_epoch_and_merged_slots() {
    let node = four_primaries();
    let text = node.cluster_nodes_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(text.ends_with('\n'));
    assert_eq!(
        lines[0],
        format!("{A} 10.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-4095")
    );
    // The replica shows B's config epoch (2); nobody is connected yet.
    assert_eq!(
        lines[4],
        format!("{E} 10.0.0.5:30005@40005 slave {B} 0 {NOW} 2 disconnected")
    );
    assert_eq!(
        node.replicas_text(B).unwrap(),
        vec![lines[4].to_string()],
        "CLUSTER REPLICAS lines are CLUSTER NODES lines"
    );
}

#[test]
fn the_own_line_lists_migrating_and_importing_slots() {
    let mut node = four_primaries();
    node.set_slot(Some(slot(100)), Some(SetSlot::Migrating(B))).unwrap();
    node.set_slot(Some(slot(101)), Some(SetSlot::Migrating(B))).unwrap();
    node.set_slot(Some(slot(5000)), Some(SetSlot::Importing(B))).unwrap();
    let text = node.cluster_nodes_text();
    let mine = text.lines().find(|l| l.contains("myself")).unwrap();
    assert!(
        mine.ends_with(&format!("0-4095 [100->-{B}] [101->-{B}] [5000-<-{B}]")),
        "{mine}"
    );
    let others: Vec<&str> = text.lines().filter(|l| !l.contains("myself")).collect();
    assert!(
        others.iter().all(|l| !l.contains('[')),
        "only our own line shows migrations"
    );
    // And they survive a restart.
    let file = NodesFile::parse(&node.nodes_conf_text()).unwrap();
    assert_eq!(file.migrating, vec![(slot(100), id(B)), (slot(101), id(B))]);
    assert_eq!(file.importing, vec![(slot(5000), id(B))]);
}

#[test]
fn cluster_info_counts_slots_by_their_owners_state() {
    let mut node = four_primaries();
    node.on_tick(NOW + 2_001);
    let info = node.cluster_info_text();
    assert!(info.contains("cluster_slots_assigned:16384\r\n"), "{info}");
    assert!(info.contains("cluster_slots_ok:12288\r\n"), "{info}");
    assert!(info.contains("cluster_slots_pfail:4096\r\n"), "D is PFAIL: {info}");
    assert!(info.contains("cluster_known_nodes:5\r\n"));
    assert!(info.contains("cluster_size:4\r\n"));
    assert!(info.contains("cluster_my_epoch:1\r\n"));
}

#[test]
fn cluster_slots_lists_runs_with_synced_replicas_only() {
    let mut node = four_primaries();
    let slots = node.cluster_slots();
    assert_eq!(slots.len(), 4);
    assert_eq!((slots[1].start.get(), slots[1].end.get()), (4096, 8191));
    assert_eq!(slots[1].nodes.len(), 1, "E has not synced yet (offset 0)");
    // E announces an offset: it is listed after its primary.
    let link = node.accept_link(addr("10.0.0.5"), addr("10.0.0.1"), NOW);
    let mut ping = ping_from(&node, E, vec![]);
    ping.header.slots = node.lookup(B).unwrap().slots.clone();
    ping.header.config_epoch = Epoch(2);
    ping.header.repl_offset = 14;
    node.on_message(link, ping, NOW);
    let slots = node.cluster_slots();
    let ids: Vec<NodeId> = slots[1].nodes.iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![id(B), id(E)]);
    assert_eq!(slots[1].nodes[1].port, 30005);
}

#[test]
fn cluster_shards_groups_each_primary_with_its_replicas() {
    let node = four_primaries();
    let shards = node.cluster_shards();
    assert_eq!(shards.len(), 4);
    let b = &shards[1];
    assert_eq!(b.slots.len(), 1);
    assert_eq!((b.slots[0].start, b.slots[0].end), (4096, 8191));
    let roles: Vec<(&str, &str)> = b.nodes.iter().map(|n| (n.role, n.health)).collect();
    assert_eq!(roles, vec![("master", "online"), ("replica", "loading")]);
    assert_eq!(b.nodes[0].endpoint, "10.0.0.2");
}

// ---- Slot administration -----------------------------------------------------------------------------------

#[test]
fn addslots_refuses_busy_then_repeated_slots_and_changes_nothing_on_refusal() {
    let mut node = fresh();
    node.add_slots(&[slot(0), slot(1)]).unwrap();
    assert_eq!(node.take_effects().first(), Some(&Effect::SaveConfig));
    assert_eq!(
        node.add_slots(&[slot(5), slot(0)]),
        Err(ClusterError::SlotBusy(slot(0)))
    );
    assert_eq!(
        node.add_slots(&[slot(7), slot(7)]),
        Err(ClusterError::SlotRepeated(slot(7)))
    );
    assert_eq!(
        node.add_slots(&[slot(0), slot(0)]),
        Err(ClusterError::SlotBusy(slot(0)))
    );
    assert_eq!(node.myself().slot_count(), 2, "a refused command assigns nothing");
}

#[test]
fn addslotsrange_checks_each_pair_in_order() {
    let mut node = fresh();
    node.add_slots(&[slot(0)]).unwrap();
    assert_eq!(
        node.add_slot_ranges(&[(Some(slot(5)), Some(slot(1)))]),
        Err(ClusterError::SlotRangeReversed {
            start: slot(5),
            end: slot(1)
        })
    );
    // The first pair's busy slot is found before the second pair's bad argument is looked at.
    assert_eq!(
        node.add_slot_ranges(&[(Some(slot(0)), Some(slot(10))), (None, Some(slot(20)))]),
        Err(ClusterError::SlotBusy(slot(0)))
    );
    assert_eq!(
        node.add_slot_ranges(&[(Some(slot(1)), Some(slot(10))), (None, Some(slot(20)))]),
        Err(ClusterError::InvalidSlot)
    );
    node.add_slot_ranges(&[(Some(slot(1)), Some(slot(5460)))]).unwrap();
    assert!(node.cluster_nodes_text().contains(" 0-5460\n"));
}

#[test]
fn delslots_refuses_unassigned_slots() {
    let mut node = fresh();
    node.add_slot_ranges(&[(Some(slot(0)), Some(slot(5460)))]).unwrap();
    node.del_slots(&[slot(5460)]).unwrap();
    assert_eq!(
        node.del_slot_ranges(&[(Some(slot(5460)), Some(slot(5470)))]),
        Err(ClusterError::SlotUnassigned(slot(5460)))
    );
    assert_eq!(node.flush_slots(false), Err(ClusterError::FlushSlotsNotEmpty));
    node.flush_slots(true).unwrap();
    assert_eq!(node.slots_assigned(), 0);
}

#[test]
fn setslot_refuses_in_redis_order() {
    let mut node = four_primaries();
    assert_eq!(node.set_slot(None, None), Err(ClusterError::InvalidSlot));
    assert_eq!(
        node.set_slot(Some(slot(0)), None),
        Err(ClusterError::InvalidSetSlotAction)
    );
    assert_eq!(
        node.set_slot(Some(slot(6000)), Some(SetSlot::Migrating(B))),
        Err(ClusterError::NotSlotOwner(slot(6000)))
    );
    assert_eq!(
        node.set_slot(Some(slot(200)), Some(SetSlot::Importing(B))),
        Err(ClusterError::AlreadySlotOwner(slot(200)))
    );
    assert_eq!(
        node.set_slot(Some(slot(100)), Some(SetSlot::Migrating("nosuch"))),
        Err(ClusterError::DontKnowNode("nosuch".into()))
    );
    assert_eq!(
        node.set_slot(
            Some(slot(100)),
            Some(SetSlot::Node {
                id: "nosuch",
                keys_in_slot: 0
            })
        ),
        Err(ClusterError::UnknownNode("nosuch".into()))
    );
    assert_eq!(
        node.set_slot(Some(slot(100)), Some(SetSlot::Node { id: B, keys_in_slot: 3 })),
        Err(ClusterError::SlotHasKeys(slot(100)))
    );
    // Redis 7.0 lets a slot be pointed at a replica; so do we.
    node.set_slot(Some(slot(6000)), Some(SetSlot::Importing(E))).unwrap();
}

#[test]
fn setslot_on_a_replica_is_refused_before_anything_else() {
    let mut node = fresh();
    let text = format!(
        "{A} 10.0.0.1:30001@40001 myself,slave {B} 0 0 0 connected\n\
         {B} 10.0.0.2:30002@40002 master - 0 0 2 connected 0-16383\n"
    );
    node = ClusterNode::from_nodes_file(ClusterConfig::new(30001), &NodesFile::parse(&text).unwrap(), 1, NOW)
        .unwrap_or(node);
    assert_eq!(node.set_slot(None, None), Err(ClusterError::SetSlotOnReplica));
}

#[test]
fn setslot_node_after_importing_takes_a_new_config_epoch_and_tells_everyone() {
    let mut node = four_primaries();
    let links = connect_all(&mut node, NOW);
    node.take_effects();
    node.set_slot(Some(slot(5000)), Some(SetSlot::Importing(B))).unwrap();
    node.set_slot(
        Some(slot(5000)),
        Some(SetSlot::Node {
            id: A,
            keys_in_slot: 12,
        }),
    )
    .unwrap();
    assert_eq!(node.slot_owner(slot(5000)).unwrap().id, id(A));
    assert_eq!(
        node.myself().config_epoch,
        Epoch(5),
        "bumped past the greatest epoch (4)"
    );
    assert_eq!(node.current_epoch(), Epoch(5));
    assert!(node.importing_from(slot(5000)).is_none());
    let effects = node.take_effects();
    assert_eq!(effects.first(), Some(&Effect::SaveConfig));
    let pongs = sends(&effects)
        .into_iter()
        .filter(|(_, m)| m.kind() == MessageKind::Pong)
        .count();
    assert_eq!(pongs, links.len(), "a PONG to every node");
}

#[test]
fn giving_away_the_last_slot_turns_a_primary_into_a_replica_of_the_taker() {
    let mut node = fresh();
    let me = node.my_id();
    node.add_slots(&[slot(7)]).unwrap();
    let peer = format!(
        "{me} 10.0.0.1:30001@40001 myself,master - 0 0 1 connected 7\n\
         {B} 10.0.0.2:30002@40002 master - 0 0 2 connected\n"
    );
    node = ClusterNode::from_nodes_file(ClusterConfig::new(30001), &NodesFile::parse(&peer).unwrap(), 1, NOW).unwrap();
    node.take_effects();
    node.set_slot(Some(slot(7)), Some(SetSlot::Node { id: B, keys_in_slot: 0 }))
        .unwrap();
    assert!(node.is_replica());
    assert_eq!(node.my_primary().map(|p| p.id), Some(id(B)));
    assert!(node
        .take_effects()
        .iter()
        .any(|e| matches!(e, Effect::ReplicateFrom { primary, .. } if *primary == id(B))));
}

// ---- Epochs ------------------------------------------------------------------------------------------------

#[test]
fn set_config_epoch_only_on_a_lonely_node_at_epoch_zero() {
    let mut node = fresh();
    assert_eq!(node.set_config_epoch(-1), Err(ClusterError::InvalidConfigEpoch(-1)));
    node.set_config_epoch(5).unwrap();
    assert_eq!(node.current_epoch(), Epoch(5));
    assert_eq!(node.set_config_epoch(6), Err(ClusterError::ConfigEpochNonZero));
    node.meet("127.0.0.1", 30002, None, NOW).unwrap();
    assert_eq!(node.set_config_epoch(6), Err(ClusterError::ConfigEpochOthersKnown));
}

#[test]
fn bumpepoch_bumps_once_then_stays() {
    let mut node = four_primaries();
    assert_eq!(node.bump_epoch(), (true, Epoch(5)));
    assert_eq!(node.bump_epoch(), (false, Epoch(5)));
}

#[test]
fn of_two_primaries_with_one_config_epoch_the_smaller_id_moves_on() {
    // A < B: A moves to currentEpoch + 1.
    let mut node = four_primaries();
    let link = node.accept_link(addr("10.0.0.2"), addr("10.0.0.1"), NOW);
    let mut ping = ping_from(&node, B, vec![]);
    ping.header.config_epoch = Epoch(1);
    node.on_message(link, ping, NOW);
    // B's config epoch in our table stays 2 (a smaller one is not taken), so no collision with us at 1.
    assert_eq!(node.myself().config_epoch, Epoch(1));
    assert_eq!(node.lookup(B).unwrap().config_epoch, Epoch(2));

    let text = format!(
        "{B} 10.0.0.2:30002@40002 myself,master - 0 0 3 connected 0-100\n\
         {A} 10.0.0.1:30001@40001 master - 0 0 3 connected 101-200\n\
         vars currentEpoch 7 lastVoteEpoch 0\n"
    );
    // B > A: B keeps its epoch when A collides with it.
    let mut b =
        ClusterNode::from_nodes_file(ClusterConfig::new(30002), &NodesFile::parse(&text).unwrap(), 1, NOW).unwrap();
    b.take_effects();
    let link = b.accept_link(addr("10.0.0.1"), addr("10.0.0.2"), NOW);
    let mut ping = message(A, 3, b.lookup(A).unwrap().slots.clone(), None, Body::Ping(vec![]));
    ping.header.port = 30001;
    ping.header.bus_port = 40001;
    ping.header.ip = Some(addr("10.0.0.1"));
    b.on_message(link, ping.clone(), NOW);
    assert_eq!(b.myself().config_epoch, Epoch(3));

    // A, seeing B at its own epoch, moves to currentEpoch + 1 and saves before sending anything else.
    let text = format!(
        "{A} 10.0.0.1:30001@40001 myself,master - 0 0 3 connected 101-200\n\
         {B} 10.0.0.2:30002@40002 master - 0 0 3 connected 0-100\n\
         vars currentEpoch 7 lastVoteEpoch 0\n"
    );
    let mut a =
        ClusterNode::from_nodes_file(ClusterConfig::new(30001), &NodesFile::parse(&text).unwrap(), 1, NOW).unwrap();
    a.take_effects();
    let link = a.accept_link(addr("10.0.0.2"), addr("10.0.0.1"), NOW);
    let mut ping = message(B, 3, a.lookup(B).unwrap().slots.clone(), None, Body::Ping(vec![]));
    ping.header.port = 30002;
    ping.header.bus_port = 40002;
    ping.header.ip = Some(addr("10.0.0.2"));
    let effects = a.on_message(link, ping, NOW);
    assert_eq!(a.myself().config_epoch, Epoch(8));
    assert_eq!(a.current_epoch(), Epoch(8));
    assert_eq!(effects.first(), Some(&Effect::SaveConfig));
}

#[test]
fn a_claim_with_a_greater_config_epoch_takes_the_slots() {
    let mut node = four_primaries();
    let link = node.accept_link(addr("10.0.0.3"), addr("10.0.0.1"), NOW);
    // C claims B's slots too, under epoch 9 > B's 2.
    let mut claim = node.lookup(C).unwrap().slots.clone();
    for s in 4096..=8191 {
        claim.insert(slot(s));
    }
    let mut ping = ping_from(&node, C, vec![]);
    ping.header.slots = claim;
    ping.header.config_epoch = Epoch(9);
    node.on_message(link, ping, NOW);
    assert_eq!(node.slot_owner(slot(5000)).unwrap().id, id(C));
    assert!(node.lookup(B).unwrap().slots.is_empty());
    assert_eq!(node.lookup(C).unwrap().config_epoch, Epoch(9));
}

#[test]
fn a_claim_with_a_smaller_config_epoch_is_answered_with_an_update() {
    let mut node = four_primaries();
    let links = connect_all(&mut node, NOW);
    // D claims A's... no: B, at epoch 2, claims C's slots (epoch 3): stale.
    let mut claim = node.lookup(B).unwrap().slots.clone();
    claim.insert(slot(9000));
    let inbound = node.accept_link(addr("10.0.0.2"), addr("10.0.0.1"), NOW);
    let mut ping = ping_from(&node, B, vec![]);
    ping.header.slots = claim;
    let effects = node.on_message(inbound, ping, NOW);
    assert_eq!(node.slot_owner(slot(9000)).unwrap().id, id(C), "C keeps it");
    let update = sends(&effects)
        .into_iter()
        .find(|(_, m)| m.kind() == MessageKind::Update)
        .expect("an UPDATE");
    assert_eq!(update.0, links[&id(B)], "sent on our link to B");
    match &update.1.body {
        Body::Update {
            id: about,
            config_epoch,
            slots,
        } => {
            assert_eq!(*about, id(C));
            assert_eq!(*config_epoch, Epoch(3));
            assert!(slots.contains(slot(9000)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_update_with_a_newer_epoch_rebinds_slots_and_a_stale_one_is_ignored() {
    let mut node = four_primaries();
    let link = node.accept_link(addr("10.0.0.2"), addr("10.0.0.1"), NOW);
    let slots = SlotRanges::range(slot(8192), slot(12287));
    let stale = message(
        B,
        2,
        SlotRanges::new(),
        None,
        Body::Update {
            id: id(D),
            config_epoch: Epoch(3),
            slots: slots.clone(),
        },
    );
    node.on_message(link, stale, NOW);
    assert_eq!(
        node.slot_owner(slot(9000)).unwrap().id,
        id(C),
        "D's epoch 4 is not older than 3"
    );
    let fresh = message(
        B,
        2,
        SlotRanges::new(),
        None,
        Body::Update {
            id: id(D),
            config_epoch: Epoch(10),
            slots,
        },
    );
    node.on_message(link, fresh, NOW);
    assert_eq!(node.slot_owner(slot(9000)).unwrap().id, id(D));
    assert_eq!(node.lookup(D).unwrap().config_epoch, Epoch(10));
}

#[test]
fn losing_slots_to_a_newer_claim_deletes_their_keys() {
    let mut node = four_primaries();
    let link = node.accept_link(addr("10.0.0.2"), addr("10.0.0.1"), NOW);
    let mut claim = node.lookup(B).unwrap().slots.clone();
    claim.insert(slot(0));
    let mut ping = ping_from(&node, B, vec![]);
    ping.header.slots = claim;
    ping.header.config_epoch = Epoch(9);
    let effects = node.on_message(link, ping, NOW);
    assert!(effects.contains(&Effect::DeleteKeysInSlots(SlotRanges::range(slot(0), slot(0)))));
    assert!(!node.is_replica(), "we still serve 1-4095");
}

// ---- Failure detection --------------------------------------------------------------------------------------

#[test]
fn a_ping_unanswered_past_the_node_timeout_flags_pfail() {
    let mut node = four_primaries();
    node.on_tick(NOW + 1_999);
    assert!(!node.lookup(D).unwrap().timed_out());
    node.on_tick(NOW + 2_001);
    assert!(node.lookup(D).unwrap().timed_out());
    assert!(node.cluster_nodes_text().contains("master,fail?"));
}

#[test]
fn reports_from_a_majority_of_primaries_turn_pfail_into_fail() {
    let mut node = four_primaries();
    let links = connect_all(&mut node, NOW + 1_500);
    let now = NOW + 2_001;
    node.on_tick(now);
    assert!(node.lookup(D).unwrap().timed_out());
    // Quorum: 4 slot-serving primaries / 2 + 1 = 3; we count ourselves.
    let from_b = node.accept_link(addr("10.0.0.2"), addr("10.0.0.1"), now);
    let ping = ping_from(&node, B, vec![gossip_about(&node, D, NodeFlags::PFAIL)]);
    node.on_message(from_b, ping, now);
    assert_eq!(node.count_failure_reports(D, now), Ok(1));
    assert!(!node.lookup(D).unwrap().is_failed(), "2 of 3");
    // A replica's word does not count.
    let from_e = node.accept_link(addr("10.0.0.5"), addr("10.0.0.1"), now);
    let ping = ping_from(&node, E, vec![gossip_about(&node, D, NodeFlags::FAIL)]);
    node.on_message(from_e, ping, now);
    assert_eq!(node.count_failure_reports(D, now), Ok(1));
    // C agrees: FAIL, broadcast to everyone we are connected to.
    let from_c = node.accept_link(addr("10.0.0.3"), addr("10.0.0.1"), now);
    let ping = ping_from(&node, C, vec![gossip_about(&node, D, NodeFlags::PFAIL)]);
    let effects = node.on_message(from_c, ping, now);
    let d = node.lookup(D).unwrap();
    assert!(d.is_failed() && !d.timed_out());
    assert_eq!(d.fail_time_ms, now);
    let fails: Vec<LinkId> = sends(&effects)
        .into_iter()
        .filter(|(_, m)| m.body == Body::Fail { id: id(D) })
        .map(|(l, _)| l)
        .collect();
    assert_eq!(fails.len(), links.len(), "FAIL goes to every node with a link");
    assert_eq!(effects.first(), Some(&Effect::SaveConfig));
    // D's slots are not served: the cluster is down.
    assert!(!node.cluster_state_ok());
    assert!(node
        .cluster_nodes_text()
        .contains(&format!("{D} 10.0.0.4:30004@40004 master,fail -")));
}

#[test]
fn failure_reports_expire_after_two_node_timeouts_and_are_withdrawn_by_good_news() {
    let mut node = four_primaries();
    let from_b = node.accept_link(addr("10.0.0.2"), addr("10.0.0.1"), NOW);
    let ping = ping_from(&node, B, vec![gossip_about(&node, D, NodeFlags::PFAIL)]);
    node.on_message(from_b, ping, NOW);
    assert_eq!(node.count_failure_reports(D, NOW + 4_000), Ok(1));
    assert_eq!(node.count_failure_reports(D, NOW + 4_001), Ok(0));

    let ping = ping_from(&node, B, vec![gossip_about(&node, D, NodeFlags::PFAIL)]);
    node.on_message(from_b, ping, NOW);
    let ping = ping_from(&node, B, vec![gossip_about(&node, D, NodeFlags::empty())]);
    node.on_message(from_b, ping, NOW + 10);
    assert_eq!(node.count_failure_reports(D, NOW + 10), Ok(0));
    assert_eq!(
        node.count_failure_reports("nosuch", NOW),
        Err(ClusterError::UnknownNode("nosuch".into()))
    );
}

#[test]
fn a_fail_message_from_a_known_node_flags_fail_at_once_but_never_myself() {
    let mut node = four_primaries();
    let link = node.accept_link(addr("10.0.0.2"), addr("10.0.0.1"), NOW);
    let fail = message(B, 2, SlotRanges::new(), None, Body::Fail { id: id(C) });
    node.on_message(link, fail, NOW);
    assert!(node.lookup(C).unwrap().is_failed());
    let about_me = message(B, 2, SlotRanges::new(), None, Body::Fail { id: id(A) });
    node.on_message(link, about_me, NOW);
    assert!(!node.myself().is_failed());
    // From a stranger: ignored.
    let stranger = node.accept_link(addr("10.9.9.9"), addr("10.0.0.1"), NOW);
    let fail = message(
        "9999999999999999999999999999999999999999",
        2,
        SlotRanges::new(),
        None,
        Body::Fail { id: id(D) },
    );
    node.on_message(stranger, fail, NOW);
    assert!(!node.lookup(D).unwrap().is_failed());
}

#[test]
fn fail_is_cleared_for_a_replica_that_answers_and_for_a_primary_only_after_two_timeouts() {
    let mut node = four_primaries();
    let links = connect_all(&mut node, NOW);
    let from_b = node.accept_link(addr("10.0.0.2"), addr("10.0.0.1"), NOW);
    for victim in [E, C] {
        let fail = message(B, 2, SlotRanges::new(), None, Body::Fail { id: id(victim) });
        node.on_message(from_b, fail, NOW);
    }
    let pong_on = |node: &mut ClusterNode, who: &str, at: u64| {
        let mut pong = ping_from(node, who, vec![]);
        pong.body = Body::Pong(vec![]);
        node.on_message(links[&id(who)], pong, at);
    };
    pong_on(&mut node, E, NOW + 100);
    assert!(
        !node.lookup(E).unwrap().is_failed(),
        "a replica is cleared as soon as it answers"
    );
    pong_on(&mut node, C, NOW + 100);
    assert!(node.lookup(C).unwrap().is_failed(), "a primary with slots: not yet");
    pong_on(&mut node, C, NOW + 4_001);
    assert!(
        !node.lookup(C).unwrap().is_failed(),
        "nobody took its slots in two node timeouts"
    );
}

#[test]
fn a_pong_clears_pfail() {
    let mut node = four_primaries();
    let links = connect_all(&mut node, NOW + 1_500);
    node.on_tick(NOW + 2_500);
    assert!(node.lookup(D).unwrap().timed_out());
    let mut pong = ping_from(&node, D, vec![]);
    pong.body = Body::Pong(vec![]);
    node.on_message(links[&id(D)], pong, NOW + 2_600);
    let d = node.lookup(D).unwrap();
    assert!(!d.timed_out());
    assert_eq!((d.ping_sent_ms, d.pong_received_ms), (0, NOW + 2_600));
}

#[test]
fn a_link_silent_for_half_the_timeout_is_dropped_once_older_than_the_timeout() {
    let mut node = four_primaries();
    let links = connect_all(&mut node, NOW);
    let effects = node.on_tick(NOW + 2_001);
    // Every node got a ping at connection time and none answered: every link is reset.
    for link in links.values() {
        assert!(effects.contains(&Effect::CloseLink { link: *link }));
    }
    assert!(node.nodes().all(|n| n.is_myself() || n.link.is_none()));
}

// ---- Membership -------------------------------------------------------------------------------------------

#[test]
fn meet_checks_the_address_and_starts_one_handshake_per_address() {
    let mut node = fresh();
    let invalid = |ip: &str, port: &str| ClusterError::InvalidNodeAddress {
        ip: ip.into(),
        port: port.into(),
    };
    assert_eq!(node.meet("1.2.3", 5, None, NOW), Err(invalid("1.2.3", "5")));
    assert_eq!(
        node.meet("localhost", 30002, None, NOW),
        Err(invalid("localhost", "30002"))
    );
    assert_eq!(
        node.meet("127.0.0.1", 99999, None, NOW),
        Err(invalid("127.0.0.1", "99999"))
    );
    assert_eq!(
        node.meet("127.0.0.1", 30002, Some(0), NOW),
        Err(invalid("127.0.0.1", "30002"))
    );
    assert_eq!(node.meet("127.0.0.1", 0, None, NOW), Err(invalid("127.0.0.1", "0")));
    node.meet("127.0.0.1", 30002, None, NOW).unwrap();
    node.meet("127.0.0.1", 30002, None, NOW).unwrap();
    node.meet("::1", 30002, Some(30003), NOW).unwrap();
    let text = node.cluster_nodes_text();
    assert_eq!(text.matches(" handshake ").count(), 2, "{text}");
    assert!(
        text.contains(" 127.0.0.1:30002@40002 handshake - 0 0 0 disconnected\n"),
        "{text}"
    );
    assert!(
        text.contains(" ::1:30002@30003 handshake - 0 0 0 disconnected\n"),
        "{text}"
    );
    // Handshakes are not saved, and expire after the node timeout.
    assert!(!node.nodes_conf_text().contains("handshake"));
    node.on_tick(NOW + DEFAULT_NODE_TIMEOUT_MS + 1);
    assert_eq!(node.nodes().count(), 1);
}

#[test]
fn a_meet_from_a_stranger_is_answered_with_a_pong_that_says_we_do_not_know_it() {
    let mut node = fresh();
    let link = node.accept_link(addr("10.0.0.2"), addr("10.0.0.7"), NOW);
    let mut meet = message(B, 0, SlotRanges::new(), None, Body::Meet(vec![]));
    meet.header.port = 30002;
    meet.header.bus_port = 40002;
    let effects = node.on_message(link, meet, NOW);
    // We learned our own address from the connection, and added a handshake for the stranger.
    assert_eq!(node.myself().ip, Some(addr("10.0.0.7")));
    let handshake = node.nodes().find(|n| n.in_handshake()).unwrap();
    assert_eq!(
        (handshake.ip, handshake.port, handshake.bus_port),
        (Some(addr("10.0.0.2")), 30002, 40002)
    );
    let pong = sends(&effects).into_iter().find(|(l, _)| *l == link).unwrap().1;
    assert_eq!(pong.kind(), MessageKind::Pong);
    assert_eq!(pong.header.mflags & MFLAG_SENDER_UNKNOWN, MFLAG_SENDER_UNKNOWN);
    // A PING from a stranger is answered and otherwise ignored.
    let mut node = fresh();
    let link = node.accept_link(addr("10.0.0.2"), addr("10.0.0.7"), NOW);
    let ping = message(B, 0, SlotRanges::new(), None, Body::Ping(vec![]));
    let effects = node.on_message(link, ping, NOW);
    assert_eq!(node.nodes().count(), 1);
    assert_eq!(sends(&effects).len(), 1);
}

#[test]
fn the_pong_to_a_meet_completes_the_handshake_under_the_real_id() {
    let mut node = fresh();
    node.meet("10.0.0.2", 30002, None, NOW).unwrap();
    let effects = node.on_tick(NOW);
    let link = effects
        .iter()
        .find_map(|e| match e {
            Effect::Connect { link, ip, bus_port } if *ip == addr("10.0.0.2") && *bus_port == 40002 => Some(*link),
            _ => None,
        })
        .expect("a connection to the met address");
    let effects = node.on_link_connected(link, NOW);
    assert_eq!(sends(&effects)[0].1.kind(), MessageKind::Meet);
    let mut pong = message(B, 0, SlotRanges::range(slot(0), slot(99)), None, Body::Pong(vec![]));
    pong.header.port = 30002;
    pong.header.bus_port = 40002;
    node.on_message(link, pong.clone(), NOW + 5);
    let b = node.lookup(B).expect("renamed to its real id");
    assert!(b.is_primary() && !b.in_handshake());
    // As in Redis, the handshake's PONG does not apply the header yet; the next one does.
    assert!(b.slots.is_empty());
    node.on_message(link, pong, NOW + 10);
    assert_eq!(node.slot_owner(slot(50)).unwrap().id, id(B));
    assert!(node.nodes_conf_text().contains(B));
}

#[test]
fn a_pong_from_another_id_at_a_known_address_marks_the_node_noaddr() {
    let mut node = four_primaries();
    let links = connect_all(&mut node, NOW);
    let pong = message(
        "9999999999999999999999999999999999999999",
        0,
        SlotRanges::new(),
        None,
        Body::Pong(vec![]),
    );
    let effects = node.on_message(links[&id(C)], pong, NOW);
    let c = node.lookup(C).unwrap();
    assert!(c.flags.contains(NodeFlags::NOADDR));
    assert!(c.link.is_none());
    assert!(effects.contains(&Effect::CloseLink { link: links[&id(C)] }));
    assert!(node.cluster_nodes_text().contains(&format!("{C} :0@0 master,noaddr")));
}

#[test]
fn gossip_from_a_known_node_adds_unknown_nodes_without_their_failure_flags() {
    let mut node = four_primaries();
    let link = node.accept_link(addr("10.0.0.2"), addr("10.0.0.1"), NOW);
    let stranger = GossipEntry {
        id: NodeId::from_bytes([0x12; 20]),
        ip: Some(addr("10.0.0.9")),
        port: 30009,
        bus_port: 40009,
        flags: NodeFlags::PRIMARY | NodeFlags::PFAIL,
        ping_sent_s: 0,
        pong_received_s: 0,
    };
    node.on_message(link, ping_from(&node, B, vec![stranger.clone()]), NOW);
    let added = node.node(&stranger.id).unwrap();
    assert_eq!(added.flags, NodeFlags::PRIMARY);
    assert_eq!((added.ip, added.port), (Some(addr("10.0.0.9")), 30009));
    // From a stranger's ping, nothing is learned.
    let mut other = stranger.clone();
    other.id = NodeId::from_bytes([0x13; 20]);
    let link = node.accept_link(addr("10.9.9.9"), addr("10.0.0.1"), NOW);
    let ping = message(
        "9999999999999999999999999999999999999999",
        0,
        SlotRanges::new(),
        None,
        Body::Ping(vec![other.clone()]),
    );
    node.on_message(link, ping, NOW);
    assert!(node.node(&other.id).is_none());
}

#[test]
fn gossip_advances_pong_times_in_whole_seconds_but_never_into_the_future() {
    let mut node = four_primaries();
    let link = node.accept_link(addr("10.0.0.2"), addr("10.0.0.1"), NOW);
    let mut entry = gossip_about(&node, C, NodeFlags::empty());
    entry.pong_received_s = ((NOW + 3_000) / 1000) as u32;
    node.on_message(link, ping_from(&node, B, vec![entry.clone()]), NOW + 2_400);
    assert_eq!(
        node.lookup(C).unwrap().pong_received_ms,
        NOW,
        "more than 500 ms in our future: refused"
    );
    node.on_message(link, ping_from(&node, B, vec![entry]), NOW + 2_600);
    assert_eq!(
        node.lookup(C).unwrap().pong_received_ms,
        NOW + 3_000,
        "within the tolerance"
    );
    let mut entry = gossip_about(&node, C, NodeFlags::empty());
    entry.pong_received_s = ((NOW + 2_000) / 1000) as u32;
    node.on_message(link, ping_from(&node, B, vec![entry]), NOW + 2_700);
    assert_eq!(
        node.lookup(C).unwrap().pong_received_ms,
        NOW + 3_000,
        "an older pong does not go back"
    );
    // Not while we wait for a pong of our own (D has a ping pending).
    let mut entry = gossip_about(&node, D, NodeFlags::empty());
    entry.pong_received_s = ((NOW + 2_000) / 1000) as u32;
    node.on_message(link, ping_from(&node, B, vec![entry]), NOW + 2_700);
    assert_eq!(node.lookup(D).unwrap().pong_received_ms, NOW);
}

#[test]
fn forget_refuses_myself_and_my_primary_and_bans_the_node_for_a_minute() {
    let mut node = four_primaries();
    assert_eq!(node.forget(A, NOW), Err(ClusterError::CantForgetMyself));
    assert_eq!(
        node.forget("nosuch", NOW),
        Err(ClusterError::UnknownNode("nosuch".into()))
    );
    node.forget(C, NOW).unwrap();
    assert!(node.lookup(C).is_none());
    assert!(node.slot_owner(slot(9000)).is_none(), "its slots are unassigned");
    assert_eq!(node.forget(C, NOW), Err(ClusterError::UnknownNode(C.into())));
    // Gossip about C within the minute is ignored; after it, C is learned again.
    let link = node.accept_link(addr("10.0.0.2"), addr("10.0.0.1"), NOW);
    let entry = GossipEntry {
        id: id(C),
        ip: Some(addr("10.0.0.3")),
        port: 30003,
        bus_port: 40003,
        flags: NodeFlags::PRIMARY,
        ping_sent_s: 0,
        pong_received_s: 0,
    };
    node.on_message(link, ping_from(&node, B, vec![entry.clone()]), NOW + FORGET_BAN_MS);
    assert!(node.lookup(C).is_none());
    node.on_message(link, ping_from(&node, B, vec![entry]), NOW + FORGET_BAN_MS + 1);
    assert!(node.lookup(C).is_some());

    let text = format!(
        "{E} 10.0.0.5:30005@40005 myself,slave {B} 0 0 0 connected\n\
         {B} 10.0.0.2:30002@40002 master - 0 0 2 connected 0-16383\n"
    );
    let mut replica =
        ClusterNode::from_nodes_file(ClusterConfig::new(30005), &NodesFile::parse(&text).unwrap(), 1, NOW).unwrap();
    assert_eq!(replica.forget(B, NOW), Err(ClusterError::CantForgetMyPrimary));
}

#[test]
fn replicate_needs_a_known_empty_primary() {
    let mut node = four_primaries();
    assert_eq!(
        node.replicate("nosuch", true),
        Err(ClusterError::UnknownNode("nosuch".into()))
    );
    assert_eq!(node.replicate(A, true), Err(ClusterError::CantReplicateMyself));
    assert_eq!(node.replicate(E, true), Err(ClusterError::CantReplicateReplica));
    assert_eq!(
        node.replicate(B, true),
        Err(ClusterError::ReplicateNotEmpty),
        "we serve slots"
    );
    node.flush_slots(true).unwrap();
    assert_eq!(
        node.replicate(B, false),
        Err(ClusterError::ReplicateNotEmpty),
        "we hold keys"
    );
    node.take_effects();
    node.replicate(B, true).unwrap();
    assert!(node.is_replica());
    assert_eq!(
        node.my_shard_id(),
        node.lookup(B).unwrap().shard_id,
        "a replica joins its primary's shard"
    );
    let effects = node.take_effects();
    assert!(effects.contains(&Effect::ReplicateFrom {
        primary: id(B),
        ip: addr("10.0.0.2"),
        port: 30002
    }));
    let line = node.node_description(node.myself());
    assert_eq!(
        line,
        format!("{A} 10.0.0.1:30001@40001 myself,slave {B} 0 0 2 connected")
    );
    assert!(node.cluster_info_text().contains("cluster_my_epoch:2\r\n"));
    assert_eq!(node.replicas(E), Err(ClusterError::NotAPrimary));
}

#[test]
fn reset_soft_forgets_everyone_and_reset_hard_also_takes_a_new_id_and_zero_epochs() {
    let mut node = four_primaries();
    assert_eq!(node.reset(false, false), Err(ClusterError::ResetWithKeys));
    node.reset(false, true).unwrap();
    assert_eq!(node.nodes().count(), 1);
    assert_eq!(node.my_id(), id(A));
    assert_eq!(node.slots_assigned(), 0);
    assert_eq!(node.myself().config_epoch, Epoch(1));
    assert_eq!(node.current_epoch(), Epoch(4));
    node.reset(true, true).unwrap();
    assert_ne!(node.my_id(), id(A));
    assert_eq!((node.myself().config_epoch, node.current_epoch()), (Epoch(0), Epoch(0)));
    assert!(node.take_effects().contains(&Effect::SaveConfig));

    // A replica turns primary (the server empties it).
    let text = format!(
        "{E} 10.0.0.5:30005@40005 myself,slave {B} 0 0 0 connected\n\
         {B} 10.0.0.2:30002@40002 master - 0 0 2 connected 0-16383\n"
    );
    let mut replica =
        ClusterNode::from_nodes_file(ClusterConfig::new(30005), &NodesFile::parse(&text).unwrap(), 1, NOW).unwrap();
    replica.take_effects();
    replica.reset(false, false).unwrap();
    assert!(replica.myself().is_primary());
    assert!(replica.take_effects().contains(&Effect::BecomePrimary));
}

#[test]
fn a_restarted_node_keeps_its_id_epochs_and_role() {
    let node = four_primaries();
    let text = node.nodes_conf_text();
    let again =
        ClusterNode::from_nodes_file(ClusterConfig::new(30001), &NodesFile::parse(&text).unwrap(), 9, NOW + 5).unwrap();
    assert_eq!(again.my_id(), id(A));
    assert_eq!(again.current_epoch(), Epoch(4));
    assert_eq!(again.my_shard_id(), node.my_shard_id());
    assert_eq!(again.lookup(E).unwrap().shard_id, node.lookup(E).unwrap().shard_id);
}

#[test]
fn announced_addresses_go_into_every_header() {
    let mut config = ClusterConfig::new(6379);
    config.announce_ip = Some(addr("203.0.113.7"));
    config.announce_port = Some(7000);
    config.announce_bus_port = Some(17000);
    config.announce_hostname = Some("cache-0.example".into());
    let node = ClusterNode::new(config, 1, NOW);
    let header = node.build_header();
    assert_eq!(header.ip, Some(addr("203.0.113.7")));
    assert_eq!((header.port, header.bus_port), (7000, 17000));
    assert_eq!(header.hostname.as_deref(), Some("cache-0.example"));
    assert!(node
        .cluster_nodes_text()
        .contains(" 203.0.113.7:7000@17000,cache-0.example myself,master "));
}

#[test]
fn a_replica_announces_its_primarys_slots_and_config_epoch() {
    let text = format!(
        "{E} 10.0.0.5:30005@40005 myself,slave {B} 0 0 0 connected\n\
         {B} 10.0.0.2:30002@40002 master - 0 0 2 connected 0-16383\n"
    );
    let node =
        ClusterNode::from_nodes_file(ClusterConfig::new(30005), &NodesFile::parse(&text).unwrap(), 1, NOW).unwrap();
    let header = node.build_header();
    assert_eq!(header.primary, Some(id(B)));
    assert_eq!(header.config_epoch, Epoch(2));
    assert_eq!(header.slots, SlotRanges::all());
    assert!(header.flags.contains(NodeFlags::REPLICA));
}

#[test]
fn failure_report_records_are_refreshed_not_duplicated() {
    let mut node = four_primaries();
    assert!(node.add_failure_report(id(D), id(B), NOW));
    assert!(!node.add_failure_report(id(D), id(B), NOW + 5));
    assert_eq!(
        node.lookup(D).unwrap().failure_reports,
        vec![FailureReport {
            reporter: id(B),
            time_ms: NOW + 5
        }]
    );
}

// ---- Failover: votes ---------------------------------------------------------------------------------------

/// A request for votes from `candidate`, a replica of `primary`, for `epoch`, claiming `slots` under
/// `config_epoch`.
fn auth_request(candidate: &str, primary: &str, epoch: u64, config_epoch: u64, slots: SlotRanges) -> Message {
    let mut msg = message(candidate, config_epoch, slots, Some(primary), Body::FailoverAuthRequest);
    msg.header.current_epoch = Epoch(epoch);
    msg
}

fn b_slots() -> SlotRanges {
    SlotRanges::range(slot(4096), slot(8191))
}

/// [`four_primaries`] (A is myself) with B flagged FAIL by C's word.
fn voter_with_b_failed() -> ClusterNode {
    let mut node = four_primaries();
    let from_c = node.accept_link(addr("10.0.0.3"), addr("10.0.0.1"), NOW);
    node.on_message(
        from_c,
        message(C, 3, SlotRanges::new(), None, Body::Fail { id: id(B) }),
        NOW,
    );
    node
}

fn acks(effects: &[Effect]) -> usize {
    sends(effects)
        .iter()
        .filter(|(_, m)| m.body == Body::FailoverAuthAck)
        .count()
}

#[test]
fn a_primary_votes_once_per_epoch_and_saves_the_vote_before_sending_it() {
    let mut node = voter_with_b_failed();
    let from_e = node.accept_link(addr("10.0.0.5"), addr("10.0.0.1"), NOW);
    let effects = node.on_message(from_e, auth_request(E, B, 5, 2, b_slots()), NOW + 10);
    assert_eq!(acks(&effects), 1);
    assert_eq!(
        effects.first(),
        Some(&Effect::SaveConfig),
        "persisted before the ack leaves"
    );
    assert_eq!(node.last_vote_epoch(), Epoch(5));
    assert!(node.nodes_conf_text().ends_with("lastVoteEpoch 5\n"));
    // The same epoch again: refused.
    let effects = node.on_message(from_e, auth_request(E, B, 5, 2, b_slots()), NOW + 20);
    assert_eq!(acks(&effects), 0);
    assert_eq!(node.failover_stats().votes_granted, 1);
}

#[test]
fn no_vote_for_another_replica_of_the_same_primary_within_two_node_timeouts() {
    const G: &str = "9999999999999999999999999999999999999999";
    let mut node = voter_with_b_failed();
    // G, a second replica of B, learned from B's replica E.
    let from_e = node.accept_link(addr("10.0.0.5"), addr("10.0.0.1"), NOW);
    let from_g = node.accept_link(addr("10.0.0.7"), addr("10.0.0.1"), NOW);
    let mut hello = message(G, 2, b_slots(), Some(B), Body::Ping(vec![]));
    let mut gossip = gossip_about(&node, E, NodeFlags::empty());
    gossip.id = id(G);
    gossip.ip = Some(addr("10.0.0.7"));
    node.on_message(from_e, ping_from(&node, E, vec![gossip]), NOW);
    hello.header.ip = Some(addr("10.0.0.7"));
    node.on_message(from_g, hello, NOW);
    assert_eq!(node.lookup(G).unwrap().primary, Some(id(B)));

    assert_eq!(
        acks(&node.on_message(from_e, auth_request(E, B, 5, 2, b_slots()), NOW)),
        1
    );
    // Another replica of B: not within two node timeouts.
    assert_eq!(
        acks(&node.on_message(from_g, auth_request(G, B, 6, 2, b_slots()), NOW + 3_999)),
        0
    );
    // The same replica again, in a new epoch (its election collided with another shard's): yes.
    assert_eq!(
        acks(&node.on_message(from_e, auth_request(E, B, 7, 2, b_slots()), NOW + 100)),
        1
    );
    // Two node timeouts after the last vote, anyone.
    assert_eq!(
        acks(&node.on_message(from_g, auth_request(G, B, 8, 2, b_slots()), NOW + 4_101)),
        1
    );
}

#[test]
fn votes_are_refused_as_the_specification_says() {
    // The primary is up.
    let mut node = four_primaries();
    let from_e = node.accept_link(addr("10.0.0.5"), addr("10.0.0.1"), NOW);
    assert_eq!(
        acks(&node.on_message(from_e, auth_request(E, B, 5, 2, b_slots()), NOW)),
        0
    );
    // ... unless the request is a manual failover's (FORCEACK).
    let mut forced = auth_request(E, B, 6, 2, b_slots());
    forced.header.mflags = crate::message::MFLAG_FORCE_ACK;
    assert_eq!(acks(&node.on_message(from_e, forced, NOW)), 1);

    // An epoch older than ours.
    let mut node = voter_with_b_failed();
    let from_e = node.accept_link(addr("10.0.0.5"), addr("10.0.0.1"), NOW);
    let from_c = node.accept_link(addr("10.0.0.3"), addr("10.0.0.1"), NOW);
    let mut newer = ping_from(&node, C, vec![]);
    newer.header.current_epoch = Epoch(9);
    node.on_message(from_c, newer, NOW);
    assert_eq!(
        acks(&node.on_message(from_e, auth_request(E, B, 8, 2, b_slots()), NOW)),
        0
    );

    // Slots claimed under an older config epoch than their owner's.
    let mut node = voter_with_b_failed();
    let from_e = node.accept_link(addr("10.0.0.5"), addr("10.0.0.1"), NOW);
    let stale = auth_request(E, B, 5, 1, SlotRanges::range(slot(4096), slot(8192)));
    assert_eq!(
        acks(&node.on_message(from_e, stale, NOW)),
        0,
        "slot 8192 is C's, epoch 3 > 1"
    );

    // The candidate is a primary.
    let mut node = voter_with_b_failed();
    let from_d = node.accept_link(addr("10.0.0.4"), addr("10.0.0.1"), NOW);
    let mut from_primary = message(D, 4, SlotRanges::new(), None, Body::FailoverAuthRequest);
    from_primary.header.current_epoch = Epoch(5);
    assert_eq!(acks(&node.on_message(from_d, from_primary, NOW)), 0);
}

#[test]
fn a_primary_that_still_talks_to_the_voter_is_not_replaced_whatever_its_fail_flag_says() {
    let mut node = voter_with_b_failed();
    let from_b = node.accept_link(addr("10.0.0.2"), addr("10.0.0.1"), NOW);
    node.on_message(from_b, ping_from(&node, B, vec![]), NOW + 100);
    assert!(node.lookup(B).unwrap().is_failed(), "a primary's FAIL lingers");
    let from_e = node.accept_link(addr("10.0.0.5"), addr("10.0.0.1"), NOW);
    let request = auth_request(E, B, 5, 2, b_slots());
    assert_eq!(acks(&node.on_message(from_e, request, NOW + 2_000)), 0);
    let request = auth_request(E, B, 6, 2, b_slots());
    assert_eq!(
        acks(&node.on_message(from_e, request, NOW + 2_101)),
        1,
        "silent for the node timeout"
    );
}

#[test]
fn replicas_and_primaries_without_slots_do_not_vote() {
    let text = format!(
        "{E} 10.0.0.5:30005@40005 myself,slave {B} 0 0 2 connected\n\
         {B} 10.0.0.2:30002@40002 master,fail - 0 0 2 connected 0-16383\n\
         {C} 10.0.0.3:30003@40003 slave {B} 0 0 2 connected\n\
         vars currentEpoch 4 lastVoteEpoch 0\n"
    );
    let mut node =
        ClusterNode::from_nodes_file(ClusterConfig::new(30005), &NodesFile::parse(&text).unwrap(), 1, NOW).unwrap();
    let from_c = node.accept_link(addr("10.0.0.3"), addr("10.0.0.5"), NOW);
    let request = auth_request(C, B, 5, 2, SlotRanges::all());
    assert_eq!(acks(&node.on_message(from_c, request, NOW)), 0);
    assert_eq!(node.last_vote_epoch(), Epoch(0));
}

// ---- Failover: elections -----------------------------------------------------------------------------------

/// E (myself), a synced replica of B, in a cluster of primaries A, B, C, D; every node connected and heard
/// from at `NOW`, replication offset 100.
fn replica_of_b() -> (ClusterNode, BTreeMap<NodeId, LinkId>) {
    let text = format!(
        "{E} 10.0.0.5:30005@40005 myself,slave {B} 0 0 2 connected\n\
         {A} 10.0.0.1:30001@40001 master - 0 {NOW} 1 connected 0-4095\n\
         {B} 10.0.0.2:30002@40002 master - 0 {NOW} 2 connected 4096-8191\n\
         {C} 10.0.0.3:30003@40003 master - 0 {NOW} 3 connected 8192-12287\n\
         {D} 10.0.0.4:30004@40004 master - 0 {NOW} 4 connected 12288-16383\n\
         vars currentEpoch 4 lastVoteEpoch 0\n"
    );
    let mut config = ClusterConfig::new(30005);
    config.node_timeout_ms = 2_000;
    let mut node = ClusterNode::from_nodes_file(config, &NodesFile::parse(&text).unwrap(), 3, NOW).unwrap();
    node.take_effects();
    // Running for a while: past the writable delay of a fresh start.
    node.first_state_update_ms = Some(NOW - 10_000);
    node.set_repl_offset(100);
    node.set_repl_last_interaction(NOW);
    let links = connect_all(&mut node, NOW);
    for who in [A, C, D] {
        let link = links[&id(who)];
        node.on_message(link, pong_from(&node, who), NOW);
    }
    (node, links)
}

fn pong_from(node: &ClusterNode, who: &str) -> Message {
    let mut msg = ping_from(node, who, vec![]);
    msg.body = Body::Pong(vec![]);
    msg
}

fn fail_b(node: &mut ClusterNode, links: &BTreeMap<NodeId, LinkId>, at: u64) -> Vec<Effect> {
    node.on_message(
        links[&id(A)],
        message(A, 1, SlotRanges::new(), None, Body::Fail { id: id(B) }),
        at,
    )
}

fn requests(effects: &[Effect]) -> Vec<&Message> {
    sends(effects)
        .into_iter()
        .filter(|(_, m)| m.body == Body::FailoverAuthRequest)
        .map(|(_, m)| m)
        .collect()
}

fn ack_from(who: &str, epoch: u64) -> Message {
    let mut msg = message(who, 1, SlotRanges::new(), None, Body::FailoverAuthAck);
    msg.header.current_epoch = Epoch(epoch);
    msg
}

#[test]
fn a_replica_of_a_failed_primary_asks_after_the_fixed_delay_and_wins_with_a_majority() {
    let (mut node, links) = replica_of_b();
    let t = NOW + 200;
    assert!(
        requests(&fail_b(&mut node, &links, t)).is_empty(),
        "rank 0 waits the fixed delay"
    );
    assert!(requests(&node.on_tick(t + ELECTION_DELAY_MS - 1)).is_empty());
    let effects = node.on_tick(t + ELECTION_DELAY_MS);
    let asked = requests(&effects);
    assert_eq!(asked.len(), links.len(), "every node is asked");
    assert_eq!(
        effects.first(),
        Some(&Effect::SaveConfig),
        "the new epoch is saved first"
    );
    let header = &asked[0].header;
    assert_eq!(header.current_epoch, Epoch(5));
    assert_eq!((header.config_epoch, &header.slots), (Epoch(2), &b_slots()));
    assert_eq!(header.mflags & crate::message::MFLAG_FORCE_ACK, 0);

    // Quorum: 4 slot-serving primaries / 2 + 1 = 3 votes.
    let at = t + ELECTION_DELAY_MS + 5;
    node.on_message(links[&id(A)], ack_from(A, 5), at);
    node.on_message(links[&id(C)], ack_from(C, 5), at);
    node.on_message(links[&id(C)], ack_from(C, 5), at);
    assert!(node.is_replica(), "a voter counts once");
    let effects = node.on_message(links[&id(D)], ack_from(D, 5), at);
    assert!(effects.contains(&Effect::BecomePrimary));
    assert_eq!(effects.first(), Some(&Effect::SaveConfig));
    let me = node.myself();
    assert!(me.is_primary() && me.primary.is_none());
    assert_eq!((me.config_epoch, &me.slots), (Epoch(5), &b_slots()));
    let pongs = sends(&effects)
        .iter()
        .filter(|(_, m)| matches!(m.body, Body::Pong(_)))
        .count();
    assert_eq!(pongs, links.len(), "the new configuration is broadcast");
    assert!(node.accepts_writes(at), "the votes prove a majority: writes at once");
    assert_eq!(node.failover_stats().elections_won, 1);
}

#[test]
fn ranks_follow_the_replication_offset_with_ties_broken_by_id() {
    let (mut node, links) = replica_of_b();
    // A sibling, F, with a greater offset: we rank second.
    const F: &str = "ffffffffffffffffffffffffffffffffffffffff";
    let mut gossip = gossip_about(&node, A, NodeFlags::empty());
    gossip.id = id(F);
    gossip.ip = Some(addr("10.0.0.6"));
    gossip.flags = NodeFlags::REPLICA;
    node.on_message(links[&id(A)], ping_from(&node, A, vec![gossip]), NOW);
    let from_f = node.accept_link(addr("10.0.0.6"), addr("10.0.0.5"), NOW);
    let mut hello = message(F, 2, b_slots(), Some(B), Body::Ping(vec![]));
    hello.header.repl_offset = 101;
    node.on_message(from_f, hello.clone(), NOW);
    assert_eq!(node.replica_rank(), 1);
    // Equal offsets: the smaller id (E < F) goes first.
    hello.header.repl_offset = 100;
    node.on_message(from_f, hello, NOW);
    assert_eq!(node.replica_rank(), 0);
}

#[test]
fn a_replica_with_the_second_rank_waits_one_step_more() {
    let (mut node, links) = replica_of_b();
    const F: &str = "0fffffffffffffffffffffffffffffffffffffff";
    let mut gossip = gossip_about(&node, A, NodeFlags::empty());
    gossip.id = id(F);
    gossip.ip = Some(addr("10.0.0.6"));
    gossip.flags = NodeFlags::REPLICA;
    node.on_message(links[&id(A)], ping_from(&node, A, vec![gossip]), NOW);
    let from_f = node.accept_link(addr("10.0.0.6"), addr("10.0.0.5"), NOW);
    let mut hello = message(F, 2, b_slots(), Some(B), Body::Ping(vec![]));
    hello.header.repl_offset = 100;
    node.on_message(from_f, hello, NOW);
    let t = NOW + 200;
    fail_b(&mut node, &links, t);
    let due = t + ELECTION_DELAY_MS + ELECTION_RANK_STEP_MS;
    assert!(
        requests(&node.on_tick(due - 1)).is_empty(),
        "F (same offset, smaller id) asks first"
    );
    assert_eq!(requests(&node.on_tick(due)).len(), links.len());
}

#[test]
fn an_election_without_a_majority_expires_and_is_retried_two_node_timeouts_later() {
    let (mut node, links) = replica_of_b();
    let t = NOW + 200;
    fail_b(&mut node, &links, t);
    assert_eq!(requests(&node.on_tick(t + 100)).len(), links.len());
    // Two votes of three; then keep the others talking so that the replica still reaches a majority.
    node.on_message(links[&id(A)], ack_from(A, 5), t + 105);
    let mut retried_at = None;
    let mut now = t + 200;
    while now < t + 6_000 {
        for who in [A, C, D] {
            node.on_message(links[&id(who)], pong_from(&node, who), now);
        }
        if !requests(&node.on_tick(now)).is_empty() {
            retried_at = Some(now);
            break;
        }
        now += 100;
    }
    let retried_at = retried_at.expect("a new attempt");
    assert!(
        retried_at > t + 100 + 4_000,
        "not before two node timeouts: {}",
        retried_at - t
    );
    assert_eq!(node.current_epoch(), Epoch(6), "one new epoch per attempt");
}

#[test]
fn a_replica_cut_off_from_the_majority_never_asks_nor_raises_its_epoch() {
    let (mut node, links) = replica_of_b();
    // B is FAIL, but nothing has been heard from A, C or D for longer than the node timeout.
    let t = NOW + 2_500;
    fail_b(&mut node, &links, t - 400);
    let mut now = t;
    while now < t + 30_000 {
        assert!(requests(&node.on_tick(now)).is_empty());
        now += 100;
    }
    assert_eq!(node.current_epoch(), Epoch(4));
    assert_eq!(node.failover_stats().elections_started, 0);
}

#[test]
fn nofailover_and_stale_data_keep_a_replica_from_failing_over_automatically() {
    let (mut node, links) = replica_of_b();
    node.config.replica_no_failover = true;
    fail_b(&mut node, &links, NOW + 200);
    assert!(requests(&node.on_tick(NOW + 400)).is_empty());

    let (mut node, links) = replica_of_b();
    // Last heard from its primary 33 s ago: older than 10 s + 10 node timeouts past the node timeout.
    node.set_repl_last_interaction(NOW - 33_000);
    fail_b(&mut node, &links, NOW + 200);
    for now in (NOW + 300..NOW + 1_000).step_by(100) {
        assert!(requests(&node.on_tick(now)).is_empty());
    }
    // A forced manual failover ignores the data age.
    node.failover(FailoverMode::Force, NOW + 1_000).unwrap();
    let effects = node.take_effects();
    let asked = requests(&effects);
    assert_eq!(asked.len(), links.len());
    assert_ne!(asked[0].header.mflags & crate::message::MFLAG_FORCE_ACK, 0);
}

// ---- Failover: manual --------------------------------------------------------------------------------------

/// A (myself), a primary with replica F; B and C primaries.
fn primary_with_replica() -> (ClusterNode, BTreeMap<NodeId, LinkId>) {
    const F: &str = "ffffffffffffffffffffffffffffffffffffffff";
    let text = format!(
        "{A} 10.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460\n\
         {B} 10.0.0.2:30002@40002 master - 0 {NOW} 2 connected 5461-10922\n\
         {C} 10.0.0.3:30003@40003 master - 0 {NOW} 3 connected 10923-16383\n\
         {F} 10.0.0.6:30006@40006 slave {A} 0 {NOW} 1 connected\n\
         vars currentEpoch 3 lastVoteEpoch 0\n"
    );
    let mut config = ClusterConfig::new(30001);
    config.node_timeout_ms = 2_000;
    let mut node = ClusterNode::from_nodes_file(config, &NodesFile::parse(&text).unwrap(), 3, NOW).unwrap();
    node.take_effects();
    let links = connect_all(&mut node, NOW);
    (node, links)
}

#[test]
fn mfstart_pauses_writes_and_the_paused_offset_goes_to_the_replica() {
    const F: &str = "ffffffffffffffffffffffffffffffffffffffff";
    let (mut node, links) = primary_with_replica();
    node.set_repl_offset(500);
    let from_f = node.accept_link(addr("10.0.0.6"), addr("10.0.0.1"), NOW);
    let effects = node.on_message(
        from_f,
        message(F, 1, SlotRanges::new(), Some(A), Body::MfStart),
        NOW + 10,
    );
    let pause = MANUAL_FAILOVER_TIMEOUT_MS * MANUAL_FAILOVER_PAUSE_MULT;
    assert!(effects.contains(&Effect::PauseWrites {
        until_ms: NOW + 10 + pause
    }));
    assert_eq!(
        node.build_header().mflags & crate::message::MFLAG_PAUSED,
        0,
        "not before the driver says"
    );
    // The driver paused; writes stopped at 512.
    let effects = node.on_writes_paused(512, NOW + 11);
    let to_f: Vec<_> = sends(&effects)
        .into_iter()
        .filter(|(l, _)| *l == links[&id(F)])
        .collect();
    assert_eq!(to_f.len(), 1, "a ping at once");
    assert_ne!(to_f[0].1.header.mflags & crate::message::MFLAG_PAUSED, 0);
    assert_eq!(to_f[0].1.header.repl_offset, 512);
    // Abandoned after the timeout: writes resume.
    let effects = node.on_tick(NOW + 10 + MANUAL_FAILOVER_TIMEOUT_MS + 1);
    assert!(effects.contains(&Effect::ResumeWrites));
    assert_eq!(node.build_header().mflags & crate::message::MFLAG_PAUSED, 0);
}

#[test]
fn cluster_failover_waits_for_the_paused_offset_then_asks_with_forceack() {
    let (mut node, links) = replica_of_b();
    node.failover(FailoverMode::Default, NOW + 10).unwrap();
    let effects = node.take_effects();
    let mfstart: Vec<_> = sends(&effects)
        .into_iter()
        .filter(|(_, m)| m.body == Body::MfStart)
        .collect();
    assert_eq!(mfstart.len(), 1);
    assert_eq!(mfstart[0].0, links[&id(B)]);
    // B pauses at offset 180; we are at 100.
    let mut paused = ping_from(&node, B, vec![]);
    paused.header.mflags = crate::message::MFLAG_PAUSED;
    paused.header.repl_offset = 180;
    assert!(requests(&node.on_message(links[&id(B)], paused, NOW + 20)).is_empty());
    assert!(requests(&node.on_tick(NOW + 100)).is_empty(), "not caught up yet");
    node.set_repl_offset(180);
    let effects = node.on_tick(NOW + 200);
    let asked = requests(&effects);
    assert_eq!(asked.len(), links.len(), "at once, no delay");
    assert_ne!(asked[0].header.mflags & crate::message::MFLAG_FORCE_ACK, 0);
}

#[test]
fn cluster_failover_is_refused_on_a_primary_and_without_force_when_the_primary_is_down() {
    let mut node = four_primaries();
    assert_eq!(
        node.failover(FailoverMode::Default, NOW),
        Err(ClusterError::FailoverOnPrimary)
    );
    let (mut node, links) = replica_of_b();
    fail_b(&mut node, &links, NOW);
    assert_eq!(
        node.failover(FailoverMode::Default, NOW),
        Err(ClusterError::FailoverPrimaryDown)
    );
    assert_eq!(node.failover(FailoverMode::Force, NOW), Ok(()));
}

#[test]
fn takeover_claims_the_slots_under_a_new_epoch_and_waits_before_writing() {
    let (mut node, _) = replica_of_b();
    node.failover(FailoverMode::Takeover, NOW + 10).unwrap();
    let effects = node.take_effects();
    assert_eq!(effects.first(), Some(&Effect::SaveConfig));
    assert!(effects.contains(&Effect::BecomePrimary));
    let me = node.myself();
    assert_eq!((me.config_epoch, &me.slots), (Epoch(5), &b_slots()));
    assert_eq!(node.current_epoch(), Epoch(5));
    // B was not FAIL and did not pause: it may still be writing until it hears of us.
    assert!(!node.accepts_writes(NOW + 20));
}

// ---- The write lease ---------------------------------------------------------------------------------------

/// Messages from each of `who` at each of `times`, with a tick after each round.
fn hear(node: &mut ClusterNode, links: &BTreeMap<NodeId, LinkId>, who: &[&str], times: &[u64]) {
    for &at in times {
        for w in who {
            let pong = pong_from(node, w);
            node.on_message(links[&id(w)], pong, at);
        }
        node.on_tick(at + 1);
    }
}

#[test]
fn a_primary_accepts_writes_only_while_it_hears_from_a_majority_within_half_the_node_timeout() {
    let mut node = four_primaries();
    let links = connect_all(&mut node, NOW);
    // Quorum 3 of 4: A and two others. The first contact ends the lapse of a fresh start (writes a rejoin
    // delay later); B and C keep talking, last at NOW + 2000.
    hear(
        &mut node,
        &links,
        &[B, C],
        &[NOW + 10, NOW + 800, NOW + 1_600, NOW + 2_000],
    );
    node.on_tick(NOW + 2_050);
    assert!(node.cluster_state_ok());
    assert!(node.accepts_writes(NOW + 2_050));
    assert_eq!(node.writes_allowed_until_ms(NOW + 2_050), NOW + 3_000);
    assert!(node.accepts_writes(NOW + 2_999));
    assert!(
        !node.accepts_writes(NOW + 3_000),
        "half the node timeout after the second-best"
    );
    assert_eq!(node.writes_allowed_until_ms(NOW + 3_000), 0);
    // Heard again after the lapse: writes resume only a rejoin delay later.
    hear(&mut node, &links, &[B, C], &[NOW + 3_500]);
    assert!(!node.accepts_writes(NOW + 3_600));
    hear(&mut node, &links, &[B, C], &[NOW + 4_300, NOW + 5_100]);
    assert!(!node.accepts_writes(NOW + 5_499));
    assert!(node.accepts_writes(NOW + 5_500));
}

#[test]
fn a_lease_about_to_run_out_pings_the_primaries_not_heard_from() {
    let mut node = four_primaries();
    let links = connect_all(&mut node, NOW);
    hear(
        &mut node,
        &links,
        &[B, C, D],
        &[NOW + 10, NOW + 800, NOW + 1_600, NOW + 2_000],
    );
    node.on_tick(NOW + 2_050);
    // 500 ms left at NOW + 2500: B, C and D not heard from for 500 ms are pinged (D's own ping is pending).
    let effects = node.on_tick(NOW + 2_510);
    let pinged: Vec<LinkId> = sends(&effects)
        .into_iter()
        .filter(|(_, m)| matches!(m.body, Body::Ping(_)))
        .map(|(l, _)| l)
        .collect();
    for who in [B, C] {
        assert!(pinged.contains(&links[&id(who)]), "{who} pinged");
    }
}

#[test]
fn a_primary_fences_itself_when_its_replica_asks_for_votes() {
    const F: &str = "ffffffffffffffffffffffffffffffffffffffff";
    let (mut node, links) = primary_with_replica();
    hear(
        &mut node,
        &links,
        &[B, C],
        &[NOW + 10, NOW + 800, NOW + 1_600, NOW + 2_000],
    );
    node.on_tick(NOW + 2_050);
    assert!(node.accepts_writes(NOW + 2_060));
    let from_f = node.accept_link(addr("10.0.0.6"), addr("10.0.0.1"), NOW);
    let request = auth_request(F, A, 4, 1, SlotRanges::range(slot(0), slot(5460)));
    node.on_message(from_f, request, NOW + 2_070);
    assert!(!node.accepts_writes(NOW + 2_080));
}

#[test]
fn a_lone_primary_is_its_own_majority() {
    let mut node = fresh();
    node.add_slot_ranges(&[(Some(slot(0)), Some(slot(16383)))]).unwrap();
    node.take_effects();
    node.on_tick(NOW + 2_100);
    assert!(node.accepts_writes(NOW + 1_000_000));
}

#[test]
fn without_full_coverage_a_failed_primary_leaves_the_cluster_up_for_the_other_slots() {
    for full_coverage in [true, false] {
        let mut node = four_primaries();
        node.config.require_full_coverage = full_coverage;
        node.first_state_update_ms = Some(NOW - 10_000);
        let links = connect_all(&mut node, NOW);
        hear(&mut node, &links, &[B, C], &[NOW + 10]);
        node.on_tick(NOW + 100);
        assert!(node.cluster_state_ok());
        let from_b = node.accept_link(addr("10.0.0.2"), addr("10.0.0.1"), NOW);
        node.on_message(
            from_b,
            message(B, 2, SlotRanges::new(), None, Body::Fail { id: id(D) }),
            NOW + 200,
        );
        node.on_tick(NOW + 300);
        // Three of four primaries reachable: a majority either way; D's slots are what differs.
        assert_eq!(node.cluster_state_ok(), !full_coverage, "full coverage {full_coverage}");
    }
}
