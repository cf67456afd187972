//! Swarm testing (`kafsim run --swarm`): each seed draws its own fault mix.
//!
//! A fixed mix of every fault kind at one rate tends to hide bugs that need one
//! kind of fault alone, or many faults at once: a crash-heavy run rarely gets
//! the long quiet partition a bug needs. Swarm testing (Groce et al., 2012; the
//! swarm mode of TigerBeetle's VOPR) lets each seed draw a random subset of the
//! scenario's `faults.kinds`, its own mean interval from `faults.swarm_interval`
//! and its own `max_concurrent` from `faults.swarm_max_concurrent`. The draw
//! comes from a ChaCha8 generator seeded from the run seed alone, so the mix is
//! part of the seed: `kafsim replay --swarm` draws it again, identically.

use crate::scenario::{FaultKind, Scenario, SwarmMix};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Duration;

/// Keeps the swarm generator apart from the nemesis's, which is also seeded from the run seed.
const SWARM_SALT: u64 = 0x7377_6172_6d21_0001;

/// Draws the mix for `seed` from the scenario's allowed ranges.
pub fn draw(scenario: &Scenario, seed: u64) -> SwarmMix {
    let faults = &scenario.faults;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SWARM_SALT);
    // Each listed kind is in with probability one half; at least one always is.
    let mut kinds: Vec<FaultKind> = faults.kinds.iter().copied().filter(|_| rng.gen_bool(0.5)).collect();
    if kinds.is_empty() {
        kinds.extend(faults.kinds.choose(&mut rng).copied());
    }
    // The interval is drawn log-uniformly, so a range of 1s..60s gives as many
    // seeds of frequent faults as of rare ones.
    let (low, high) = faults.swarm_interval;
    let (low_ms, high_ms) = ((low.as_millis() as f64).max(1.0), (high.as_millis() as f64).max(1.0));
    let interval_ms = if high_ms > low_ms { (rng.gen_range(low_ms.ln()..=high_ms.ln())).exp().round() as u64 } else { low_ms as u64 };
    let (low, high) = faults.swarm_max_concurrent;
    let max_concurrent = rng.gen_range(low..=high.max(low));
    SwarmMix { kinds: kinds.iter().map(|kind| kind.name().to_string()).collect(), interval_ms: interval_ms.max(1), max_concurrent }
}

/// The scenario as `seed` runs it in swarm mode: its faults replaced by the drawn mix.
pub fn scenario_for(scenario: &Arc<Scenario>, seed: u64) -> Arc<Scenario> {
    let mix = draw(scenario, seed);
    let mut drawn = (**scenario).clone();
    drawn.faults.kinds = mix.kinds.iter().filter_map(|name| FaultKind::from_name(name)).collect();
    drawn.faults.interval = Duration::from_millis(mix.interval_ms);
    drawn.faults.max_concurrent = mix.max_concurrent;
    drawn.faults.swarm = Some(mix);
    Arc::new(drawn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn scenario() -> Scenario {
        let text = r#"
duration = "10s"
[cluster]
brokers = 3
[[topics]]
name = "t"
partitions = 1
replication_factor = 3
[faults]
kinds = ["crash", "power-loss", "partition", "pause", "packet-loss", "latency"]
interval = "4s"
swarm_interval = ["500ms", "30s"]
swarm_max_concurrent = [1, 3]
"#;
        Scenario::parse(text, Path::new("swarm.toml")).expect("the scenario parses")
    }

    #[test]
    fn a_seed_draws_the_same_mix_every_time_and_within_the_ranges() {
        let scenario = scenario();
        for seed in 0..200 {
            let mix = draw(&scenario, seed);
            assert_eq!(mix, draw(&scenario, seed), "seed {seed} draws one mix");
            assert!(!mix.kinds.is_empty() && mix.kinds.len() <= 6);
            assert!(mix.kinds.iter().all(|kind| scenario.faults.kinds.iter().any(|listed| listed.name() == kind)));
            assert!((500..=30_000).contains(&mix.interval_ms), "{}", mix.interval_ms);
            assert!((1..=3).contains(&mix.max_concurrent));
        }
    }

    #[test]
    fn seeds_draw_different_subsets_of_the_kinds() {
        let scenario = scenario();
        let mixes: std::collections::BTreeSet<Vec<String>> = (0..100).map(|seed| draw(&scenario, seed).kinds).collect();
        assert!(mixes.len() > 20, "only {} distinct kind subsets in 100 seeds", mixes.len());
        let singles = (0..100).filter(|seed| draw(&scenario, *seed).kinds.len() == 1).count();
        assert!(singles > 0, "some seed tests a single kind alone");
        let concurrency: std::collections::BTreeSet<usize> = (0..100).map(|seed| draw(&scenario, seed).max_concurrent).collect();
        assert_eq!(concurrency.len(), 3);
    }

    #[test]
    fn bad_swarm_ranges_are_refused_naming_the_key() {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/default.toml")).expect("default.toml");
        for (line, key) in [
            ("swarm_interval = [\"5s\", \"1s\"]", "faults.swarm_interval"),
            ("swarm_interval = [\"1s\"]", "faults.swarm_interval"),
            ("swarm_max_concurrent = [0, 2]", "faults.swarm_max_concurrent"),
            ("swarm_max_concurrent = [3, 2]", "faults.swarm_max_concurrent"),
            ("buggify = \"yes\"", "faults.buggify"),
        ] {
            let bad = text.replace("[faults]\n", &format!("[faults]\n{line}\n"));
            assert_ne!(bad, text, "default.toml has a [faults] table");
            let error = Scenario::parse(&bad, Path::new("bad.toml")).expect_err("refused").to_string();
            assert!(error.starts_with("bad.toml: ") && error.contains(key), "{line}: {error}");
        }
    }

    #[test]
    fn the_drawn_scenario_runs_the_mix() {
        let scenario = Arc::new(scenario());
        let drawn = scenario_for(&scenario, 7);
        let mix = drawn.faults.swarm.clone().expect("the mix is recorded");
        assert_eq!(drawn.faults.kinds.len(), mix.kinds.len());
        assert_eq!(drawn.faults.interval, Duration::from_millis(mix.interval_ms));
        assert_eq!(drawn.faults.max_concurrent, mix.max_concurrent);
    }
}
