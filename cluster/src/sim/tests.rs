//! Whole-cluster properties, checked in the simulator over many seeds.

use super::*;
use crate::node::{Epoch, NodeFlags};
use proptest::prelude::{any, prop_assert, proptest, ProptestConfig};
use rand::Rng;

const THIRD: u32 = 5461;

/// What a scripted operator does, and when.
#[derive(Debug, Clone, Copy)]
enum Step {
    Meet { from: usize, to: usize },
    AddSlots { node: usize, start: u32, end: u32 },
    Replicate { replica: usize, primary: usize },
    SetConfigEpoch { node: usize, epoch: i64 },
}

/// Forms a 6-node cluster as `redis-cli --cluster create ... --cluster-replicas 1` would, but with the steps at
/// random times and in random order: nodes 1..5 MEET node 0, nodes 0..2 take a third of the slots each, nodes
/// 3..5 replicate them (retried until they know their primary). With `set_epochs` every node first gets a
/// distinct config epoch, as redis-cli does; without, all start at 0 and collide.
fn form_cluster(sim: &mut Sim, set_epochs: bool, spread_ms: u64) -> Result<(), String> {
    let mut rng = SmallRng::seed_from_u64(sim.seed ^ 0xfeed);
    let mut steps: Vec<(u64, Step)> = Vec::new();
    if set_epochs {
        for node in 0..6 {
            steps.push((
                0,
                Step::SetConfigEpoch {
                    node,
                    epoch: node as i64 + 1,
                },
            ));
        }
    }
    for from in 1..6 {
        steps.push((rng.random_range(1..=spread_ms), Step::Meet { from, to: 0 }));
    }
    for node in 0..3 {
        let start = node as u32 * THIRD;
        let end = if node == 2 { 16383 } else { start + THIRD - 1 };
        steps.push((rng.random_range(0..=spread_ms), Step::AddSlots { node, start, end }));
    }
    for replica in 3..6 {
        steps.push((
            rng.random_range(0..=spread_ms),
            Step::Replicate {
                replica,
                primary: replica - 3,
            },
        ));
    }
    let start = sim.now_ms;
    let mut pending: Vec<(u64, Step)> = steps;
    while !pending.is_empty() {
        pending.sort_by_key(|(t, _)| *t);
        let (at, step) = pending.remove(0);
        sim.run_until(start + at);
        match step {
            Step::Meet { from, to } => {
                // On a lossy network a whole handshake can fail (Redis, relying on TCP, would not lose it):
                // like an operator checking that the join took, MEET again until the node is known.
                let known = sim.node(from).node(&sim.id(to)).is_some_and(|n| !n.in_handshake());
                if !known {
                    if at > 60_000 {
                        return Err(format!("node {from} never joined node {to}"));
                    }
                    sim.meet(from, to);
                    pending.push((at + 10_000, step));
                }
            }
            Step::AddSlots { node, start, end } => sim.add_slot_range(node, start, end),
            Step::SetConfigEpoch { node, epoch } => {
                sim.admin(node, |n, _| n.set_config_epoch(epoch))
                    .map_err(|e| format!("set-config-epoch on {node}: {e}"))?;
            }
            Step::Replicate { replica, primary } => {
                let id = sim.id(primary).to_string();
                if sim.admin(replica, |n, _| n.replicate(&id, true)).is_err() {
                    if at > 60_000 {
                        return Err(format!("node {replica} never learned node {primary}"));
                    }
                    pending.push((at + 500, step)); // not known yet: retry, as redis-cli does
                }
            }
        }
    }
    Ok(())
}

/// The formed cluster's shape: 3 primaries with a third of the slots each, 3 replicas, unique config epochs,
/// and every node reporting the cluster up. Node `i` (0..3) and node `i + 3` form a shard: as formed, `i` is its
/// primary; after a failover, `i + 3` may be, with `i` its replica.
fn check_shape(sim: &Sim) -> Result<(), String> {
    let node = sim.node(0);
    let mut primary_epochs = Vec::new();
    for shard in 0..3 {
        let (a, b) = (sim.id(shard), sim.id(shard + 3));
        let (first, second) = (
            node.node(&a).ok_or("a node is missing")?,
            node.node(&b).ok_or("a node is missing")?,
        );
        let (primary, replica) = if first.is_primary() {
            (first, second)
        } else {
            (second, first)
        };
        if !primary.is_primary() || primary.slot_count() == 0 {
            return Err(format!("shard {shard} has no primary with slots: {primary:?}"));
        }
        if replica.primary != Some(primary.id) {
            return Err(format!("shard {shard}: {} should replicate {}", replica.id, primary.id));
        }
        primary_epochs.push(primary.config_epoch);
    }
    primary_epochs.sort();
    primary_epochs.dedup();
    if primary_epochs.len() != 3 {
        return Err(format!("primary config epochs are not unique: {primary_epochs:?}"));
    }
    for i in 0..6 {
        if !sim.node(i).cluster_state_ok() {
            return Err(format!("node {i} reports cluster_state:fail"));
        }
    }
    if sim.decode_errors != 0 {
        return Err(format!("{} frames failed to decode", sim.decode_errors));
    }
    Ok(())
}

/// Runs until the views agree and the cluster has its final shape (on a lossy network a lost ping or two can
/// flag a node PFAIL for a moment at any time, so "converged" is a moment to reach, not a state to stay in).
fn settle(sim: &mut Sim, limit_ms: u64) -> Result<(), String> {
    let start = sim.now_ms;
    loop {
        match sim.check_converged().and_then(|()| check_shape(sim)) {
            Ok(()) => return Ok(()),
            Err(why) if sim.now_ms - start >= limit_ms => {
                return Err(format!("not settled after {limit_ms} ms: {why}"))
            }
            Err(_) => sim.run_for(100),
        }
    }
}

fn form_and_converge(seed: u64, config: SimConfig, set_epochs: bool, limit_ms: u64) -> Result<(Sim, u64), String> {
    let mut sim = Sim::new(seed, config);
    form_cluster(&mut sim, set_epochs, 3_000)?;
    let took = sim.run_until_converged(limit_ms, 100)?;
    // Past the writable delay, the state is up everywhere.
    sim.run_for(3_000);
    settle(&mut sim, limit_ms)?;
    Ok((sim, took))
}

#[test]
fn six_nodes_converge_on_one_slot_map_and_one_set_of_epochs() {
    let mut worst = 0;
    for_each_seed(
        "six_nodes_converge_on_one_slot_map_and_one_set_of_epochs",
        1,
        200,
        |seed| {
            let (_, took) = form_and_converge(seed, SimConfig::new(6), seed % 2 == 0, 30_000)?;
            worst = worst.max(took);
            Ok(())
        },
    );
    // Bounded: gossip spreads a 6-node configuration in a few seconds of simulated time.
    assert!(worst <= 30_000, "worst convergence {worst} ms");
}

#[test]
fn six_nodes_converge_despite_loss_delays_and_a_healed_partition() {
    for_each_seed(
        "six_nodes_converge_despite_loss_delays_and_a_healed_partition",
        1000,
        40,
        |seed| {
            let mut config = SimConfig::new(6);
            config.loss = 0.10;
            config.min_delay_ms = 1;
            config.max_delay_ms = 150;
            let mut sim = Sim::new(seed, config);
            form_cluster(&mut sim, seed % 2 == 0, 3_000)?;
            sim.run_for(2_000);
            // Cut the cluster in two for longer than the node timeout, then heal.
            sim.partition(&[0, 0, 1, 1, 1, 0]);
            sim.run_for(8_000);
            sim.heal();
            sim.run_until_converged(120_000, 250)?;
            sim.run_for(6_000);
            settle(&mut sim, 60_000)
        },
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    /// Whatever the delays (and so the order of messages), losses and the order of the operator's steps, the
    /// nodes end with one configuration.
    #[test]
    fn any_message_order_converges(seed in any::<u64>(), max_delay in 1u64..800, loss in 0.0f64..0.15, set_epochs in any::<bool>()) {
        let mut config = SimConfig::new(6);
        config.max_delay_ms = max_delay;
        config.loss = loss;
        let result = form_and_converge(seed, config, set_epochs, 120_000);
        prop_assert!(result.is_ok(), "seed {}: {:?}", seed, result.err());
    }
}

/// Replays one case of `any_message_order_converges` with tracing:
/// `SHOAL_SIM_CASE=<seed>,<max_delay>,<loss>,<set_epochs> SHOAL_SIM_TRACE=1 cargo test -p shoal-cluster
/// replay_message_order_case -- --ignored --nocapture`.
#[test]
#[ignore = "debugging aid"]
fn replay_message_order_case() {
    let case = std::env::var("SHOAL_SIM_CASE").expect("SHOAL_SIM_CASE=<seed>,<max_delay>,<loss>,<set_epochs>");
    let parts: Vec<&str> = case.split(',').collect();
    let mut config = SimConfig::new(6);
    config.max_delay_ms = parts[1].parse().unwrap();
    config.loss = parts[2].parse().unwrap();
    let result = form_and_converge(parts[0].parse().unwrap(), config, parts[3] == "true", 120_000);
    assert!(result.is_ok(), "{:?}", result.err());
}

#[test]
fn colliding_config_epochs_end_unique() {
    for_each_seed("colliding_config_epochs_end_unique", 5000, 60, |seed| {
        // Five primaries, all at config epoch 0, each with slots: every pair collides at first.
        let mut sim = Sim::new(seed, SimConfig::new(5));
        let per = 16384 / 5;
        for i in 0..5 {
            let end = if i == 4 { 16383 } else { (i as u32 + 1) * per - 1 };
            sim.add_slot_range(i, i as u32 * per, end);
        }
        let mut rng = SmallRng::seed_from_u64(seed);
        for from in 1..5 {
            let to = rng.random_range(0..from);
            sim.meet(from, to);
            sim.run_for(rng.random_range(0..500));
        }
        sim.run_until_converged(60_000, 100)?;
        let node = sim.node(0);
        let mut epochs: Vec<Epoch> = node.nodes().map(|n| n.config_epoch).collect();
        epochs.sort();
        let before = epochs.len();
        epochs.dedup();
        if epochs.len() != before {
            return Err(format!("config epochs still collide: {epochs:?}"));
        }
        // "the node with the greatest Node ID never moves forward"
        let max_id = node.nodes().map(|n| n.id).max().ok_or("no nodes")?;
        if node.node(&max_id).map(|n| n.config_epoch) != Some(Epoch(0)) {
            return Err("the greatest node id should have kept epoch 0".into());
        }
        Ok(())
    });
}

fn count_flagged(sim: &Sim, target: NodeId, flag: NodeFlags, except: usize) -> usize {
    (0..sim.nodes.len())
        .filter(|i| *i != except && sim.is_up(*i))
        .filter(|i| sim.node(*i).node(&target).is_some_and(|n| n.flags.contains(flag)))
        .count()
}

#[test]
fn a_silent_primary_goes_pfail_then_fail_everywhere_and_is_cleared_after_it_returns() {
    for_each_seed(
        "a_silent_primary_goes_pfail_then_fail_everywhere_and_is_cleared_after_it_returns",
        7000,
        20,
        |seed| {
            // Its replica does not take over (failover is tested elsewhere): nobody takes the slots.
            let mut config = SimConfig::new(6);
            config.replica_no_failover = true;
            let (mut sim, _) = form_and_converge(seed, config, true, 30_000)?;
            let timeout = sim.config.node_timeout_ms;
            let victim = 2;
            let id = sim.id(victim);
            // The primary stops answering: isolated from everyone.
            sim.partition(&[0, 0, 1, 0, 0, 0]);
            let cut = sim.now_ms;
            let mut saw_pfail_before_fail = false;
            let mut failed_at = None;
            while sim.now_ms - cut < 10 * timeout {
                // Fine steps: PFAIL reports travel at once, so FAIL follows the first PFAIL within milliseconds.
                sim.run_for(1);
                let pfail = count_flagged(&sim, id, NodeFlags::PFAIL, victim);
                let fail = count_flagged(&sim, id, NodeFlags::FAIL, victim);
                if fail == 0 && pfail > 0 {
                    saw_pfail_before_fail = true;
                }
                if fail == 5 {
                    failed_at = Some(sim.now_ms - cut);
                    break;
                }
            }
            let failed_at = failed_at.ok_or("the primary was not flagged FAIL by every node")?;
            if !saw_pfail_before_fail {
                return Err("FAIL came without PFAIL first".into());
            }
            if failed_at < timeout {
                return Err(format!("FAIL after {failed_at} ms, before the node timeout"));
            }
            // Its slots are not served: the cluster is down for the others; the reports are counted.
            if sim.node(0).cluster_state_ok() {
                return Err("cluster_state should be fail while a primary is FAIL".into());
            }
            // The isolated node alone cannot flag anyone FAIL: it is no majority.
            let lonely = sim.node(victim);
            if lonely.nodes().any(|n| n.is_failed()) {
                return Err("a minority node flagged a node FAIL".into());
            }
            // It answers again. A primary that still serves its slots gets FAIL cleared only once the FAIL is
            // older than two node timeouts.
            sim.heal();
            let healed = sim.now_ms;
            let fail_time = sim.node(0).node(&id).map(|n| n.fail_time_ms).unwrap_or(0);
            while count_flagged(&sim, id, NodeFlags::FAIL, victim) > 0 {
                if sim.now_ms - healed > 10 * timeout {
                    return Err("FAIL was never cleared".into());
                }
                sim.run_for(50);
            }
            if sim.now_ms < fail_time + 2 * timeout {
                return Err("FAIL of a primary with slots was cleared too early".into());
            }
            sim.run_until_converged(30_000, 100)?;
            sim.run_for(6_000);
            check_shape(&sim)
        },
    );
}

#[test]
fn a_failed_replica_is_cleared_as_soon_as_it_answers() {
    for_each_seed("a_failed_replica_is_cleared_as_soon_as_it_answers", 8000, 10, |seed| {
        let (mut sim, _) = form_and_converge(seed, SimConfig::new(6), true, 30_000)?;
        let timeout = sim.config.node_timeout_ms;
        let victim = 4;
        let id = sim.id(victim);
        sim.kill(victim);
        sim.run_for(6 * timeout);
        if count_flagged(&sim, id, NodeFlags::FAIL, victim) != 5 {
            return Err("the dead replica is not FAIL everywhere".into());
        }
        if !sim.node(0).cluster_state_ok() {
            return Err("a failed replica does not take the cluster down".into());
        }
        // Back from its nodes.conf, with the same id.
        sim.restart(victim)?;
        if sim.id(victim) != id {
            return Err("the restarted node has a new id".into());
        }
        sim.run_for(timeout);
        if count_flagged(&sim, id, NodeFlags::FAIL, victim) != 0 {
            return Err("the replica's FAIL outlived its return by a node timeout".into());
        }
        sim.run_until_converged(30_000, 100)?;
        Ok(())
    });
}

#[test]
fn failure_reports_are_counted_while_a_node_is_down() {
    let (mut sim, _) = form_and_converge(42, SimConfig::new(6), true, 30_000).unwrap();
    let id = sim.id(5).to_string();
    sim.kill(5);
    let mut max_reports = 0;
    for _ in 0..100 {
        sim.run_for(100);
        let now = sim.now_ms;
        let reports = sim.admin(0, |n, _| n.count_failure_reports(&id, now)).unwrap();
        max_reports = max_reports.max(reports);
    }
    assert!(max_reports >= 1, "primaries 1 and 2 report the dead node to node 0");
    assert!(max_reports <= 2, "only the other primaries report: {max_reports}");
}

#[test]
fn a_forgotten_node_stays_away_for_a_minute_then_gossip_brings_it_back() {
    for_each_seed(
        "a_forgotten_node_stays_away_for_a_minute_then_gossip_brings_it_back",
        9000,
        10,
        |seed| {
            let (mut sim, _) = form_and_converge(seed, SimConfig::new(6), true, 30_000)?;
            let gone = sim.id(5);
            let text = gone.to_string();
            // Forgotten on every node but node 4, which keeps gossiping about it.
            for i in 0..4 {
                sim.admin(i, |n, now| n.forget(&text, now)).map_err(|e| e.to_string())?;
            }
            let forgot_at = sim.now_ms;
            while sim.now_ms - forgot_at < 59_000 {
                sim.run_for(500);
                for i in 0..4 {
                    if sim.node(i).node(&gone).is_some() {
                        return Err(format!("node {i} re-added the forgotten node within the ban"));
                    }
                }
            }
            // After the ban, gossip from node 4 re-adds it.
            sim.run_until_converged(60_000, 500)?;
            Ok(())
        },
    );
}

#[test]
fn a_restarted_cluster_comes_back_from_its_nodes_conf() {
    let (mut sim, _) = form_and_converge(77, SimConfig::new(6), true, 30_000).unwrap();
    let ids: Vec<NodeId> = (0..6).map(|i| sim.id(i)).collect();
    for i in 0..6 {
        sim.kill(i);
    }
    sim.run_for(1_000);
    for i in 0..6 {
        sim.restart(i).unwrap();
    }
    sim.run_until_converged(30_000, 100).unwrap();
    sim.run_for(3_000);
    assert_eq!((0..6).map(|i| sim.id(i)).collect::<Vec<_>>(), ids);
    check_shape(&sim).unwrap();
}

#[test]
fn a_formed_cluster_from_configs_is_converged_and_quiet() {
    let files = formed_cluster_configs(3, 3, 1);
    let mut sim = Sim::from_configs(3, SimConfig::new(6), &files).unwrap();
    sim.run_until_converged(20_000, 100).unwrap();
    sim.run_for(5_000);
    sim.reset_counters();
    sim.run_for(30_000);
    sim.check_converged().unwrap();
    let rate = sim.bytes_per_sec_per_node(30_000);
    assert!(rate > 0.0 && rate < 20_000.0, "{rate} bytes/s/node");
}

/// Gossip bytes per second per node for a cluster at rest: half primaries, half replicas, formed from
/// `nodes.conf` files, measured after the links are up and pong times have settled. Prints a table; run with
/// `cargo test --release -p shoal-cluster gossip_bandwidth -- --ignored --nocapture`. `SHOAL_SIM_BANDWIDTH=
/// <nodes>:<timeout ms>:<seconds>,...` picks the cases (1000 nodes at a 2 s timeout take a long while: every
/// node pings every other about once a second).
#[test]
#[ignore = "measurement: minutes for 1000 nodes"]
fn gossip_bandwidth_at_idle() {
    let default = "6:2000:60,6:15000:60,100:2000:30,100:15000:30,1000:15000:30";
    let cases = std::env::var("SHOAL_SIM_BANDWIDTH").unwrap_or_else(|_| default.into());
    for case in cases.split(',') {
        let fields: Vec<u64> = case.split(':').filter_map(|f| f.parse().ok()).collect();
        let &[n, timeout, secs] = fields.as_slice() else {
            panic!("bad case {case:?}: <nodes>:<timeout ms>:<seconds>");
        };
        let n = n as usize;
        let started = std::time::Instant::now();
        let files = formed_cluster_configs(11, n / 2, 1);
        let mut config = SimConfig::new(n);
        config.node_timeout_ms = timeout;
        config.decode = n <= 100;
        let mut sim = Sim::from_configs(11, config, &files).unwrap();
        // Let links come up and the pong times settle before measuring.
        sim.run_for(2 * timeout + 5_000);
        sim.check_converged().unwrap();
        sim.reset_counters();
        sim.run_for(secs * 1000);
        sim.check_converged().unwrap();
        println!(
            "{n:>5} nodes, node timeout {timeout:>6} ms: {:>10.0} bytes/s/node, {:>7.1} messages/s/node \
             (simulated {secs} s in {:.1} s)",
            sim.bytes_per_sec_per_node(secs * 1000),
            sim.messages_per_sec_per_node(secs * 1000),
            started.elapsed().as_secs_f64()
        );
    }
}
