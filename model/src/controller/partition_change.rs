//! One partition's change as the controller makes it: its ISR, KIP-966's
//! eligible leader replicas (ELR) and last known leader, and who may be
//! elected when it has no leader. This follows Kafka's PartitionChangeBuilder
//! (metadata/src/main/java/org/apache/kafka/controller/PartitionChangeBuilder.java)
//! with `useLastKnownLeaderInBalancedRecovery` at its default, true.
//!
//! The election order is Kafka's `electAnyLeader`: a live ISR member; with
//! the ISR empty, a live ELR member; with both empty, the last known leader
//! once it is live again; and only then, if unclean election is enabled, any
//! live replica. The last known leader is elected even with unclean election
//! off, and may have lost what it had not flushed: with ELR on, a power loss
//! of every replica that could lead loses writes, as it does in Kafka.

use super::ControllerConfig;
use crate::protocol::PartitionState;
use crate::types::{NodeId, TopicPartition};

/// Where a new leader came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Election {
    Isr,
    /// KIP-966: the ISR was empty, an eligible leader replica was live.
    Elr,
    /// KIP-966's balanced recovery: ISR and ELR were empty (every replica that
    /// could lead came back from an unclean shutdown), and the leader the
    /// partition had when its ISR emptied is live again. Kafka counts it as an
    /// unclean election, though `unclean.leader.election.enable` is off.
    LastKnownLeader,
    Unclean,
}

/// Who leads `state` next, if anyone may, and how: Kafka's `electAnyLeader`.
/// `live` says whether a broker is registered and unfenced (Kafka's
/// `isAcceptableLeader`); a broker being fenced or back from an unclean
/// shutdown is already fenced when this is asked.
pub(super) fn choose_leader(config: &ControllerConfig, state: &PartitionState, live: impl Fn(NodeId) -> bool) -> Option<(NodeId, Election)> {
    let first_live = |candidates: &[NodeId]| state.replicas.iter().copied().find(|replica| candidates.contains(replica) && live(*replica));
    if let Some(leader) = first_live(&state.isr) {
        return Some((leader, Election::Isr));
    }
    // Kafka's `isValidNewLeader`: an ELR member may lead only once the ISR is
    // empty, not while it still has a member that is not live.
    if state.isr.is_empty() {
        if let Some(leader) = first_live(&state.elr) {
            return Some((leader, Election::Elr));
        }
    }
    if let Some(leader) = last_known_leader(config, state).filter(|leader| live(*leader)) {
        // Kafka's `canElectLastKnownLeader`; it checks that the broker is live
        // since KAFKA-19522 (before, it could elect a fenced one).
        return Some((leader, Election::LastKnownLeader));
    }
    if config.unclean_leader_election_enable {
        if let Some(leader) = first_live(&state.replicas) {
            return Some((leader, Election::Unclean));
        }
    }
    None
}

/// The last known leader, when balanced recovery may elect it: ELR on, ISR and
/// ELR empty, and exactly one last known ELR member (Kafka keeps only the
/// leader there while `useLastKnownLeaderInBalancedRecovery` holds).
fn last_known_leader(config: &ControllerConfig, state: &PartitionState) -> Option<NodeId> {
    let balanced_recovery = config.eligible_leader_replicas && state.isr.is_empty() && state.elr.is_empty();
    match state.last_known_elr.as_slice() {
        [leader] if balanced_recovery => Some(*leader),
        _ => None,
    }
}

/// Makes `leader` the partition's leader, elected as `election` says, and
/// sets the ISR, ELR and last known leader as Kafka's `tryElection` and
/// `maybeUpdateLastKnownLeader` do. The caller bumps the epochs.
pub(super) fn elect(config: &ControllerConfig, state: &mut PartitionState, leader: NodeId, election: Election) {
    state.leader = Some(leader);
    match election {
        Election::Isr => {}
        Election::Elr => change_isr(config, state, vec![leader], None),
        // The other replicas' logs may hold what the new leader lacks, so none
        // of them is in sync, nor eligible: Kafka forces the ISR to the leader
        // and, the election being unclean, clears the ELR.
        Election::LastKnownLeader | Election::Unclean => {
            state.isr = vec![leader];
            state.elr.clear();
        }
    }
    // A partition with a leader has no last known leader to fall back on.
    state.last_known_elr.clear();
}

/// Sets `state`'s ISR to `target_isr` and, with ELR on, its ELR as KIP-966
/// keeps it (PartitionChangeBuilder's `maybePopulateTargetElr`): at min ISR
/// or more the ELR is empty; below it the replicas that leave the ISR join
/// the ELR, since each held everything below the high watermark when it left
/// and the leader's high watermark stops while the ISR is that small. A
/// replica in the new ISR leaves the ELR, and a broker back from an unclean
/// shutdown is in neither.
///
/// When the ISR becomes empty, the partition's leader until now becomes its
/// last known leader (`maybeUpdateLastKnownLeader`); an unclean shutdown of
/// that broker does not take it out, which is how balanced recovery may elect
/// it with less than it acknowledged.
///
/// Kafka evaluates the ELR before an election from it and keeps the rest of
/// the ELR even when the new one-member ISR reaches min ISR (min ISR 1); here
/// the rule holds after every change, so the ELR is emptied then: the new
/// leader's high watermark moves on without the others.
pub(super) fn change_isr(config: &ControllerConfig, state: &mut PartitionState, target_isr: Vec<NodeId>, unclean_shutdown: Option<NodeId>) {
    if config.eligible_leader_replicas {
        state.elr = if target_isr.len() >= config.min_insync_replicas {
            Vec::new()
        } else {
            state
                .replicas
                .iter()
                .copied()
                .filter(|replica| state.elr.contains(replica) || state.isr.contains(replica))
                .filter(|replica| !target_isr.contains(replica) && Some(*replica) != unclean_shutdown)
                .collect()
        };
        if target_isr.is_empty() && !state.isr.is_empty() {
            // Kafka records the leader as it was, -1 if none; an empty list
            // here, which no election can pick either.
            state.last_known_elr = state.leader.into_iter().collect();
        }
    }
    state.isr = target_isr;
}

/// A partition's leader leads from the ISR, no replica is both in the ISR and
/// eligible outside it, and a last known leader is kept only while the
/// partition has neither a leader nor an ISR.
pub(super) fn assert_consistent(tp: &TopicPartition, state: &PartitionState) {
    assert!(state.leader.is_none_or(|leader| state.isr.contains(&leader)), "controller invariant: {tp}'s leader {:?} is in its ISR {:?}", state.leader, state.isr);
    assert!(
        state.elr.iter().all(|replica| !state.isr.contains(replica) && state.replicas.contains(replica)),
        "controller invariant: {tp}'s ELR {:?} holds replicas ({:?}) outside its ISR {:?}",
        state.elr,
        state.replicas,
        state.isr
    );
    assert!(
        state.last_known_elr.is_empty() || (state.last_known_elr.len() == 1 && state.leader.is_none() && state.isr.is_empty()),
        "controller invariant: {tp} keeps a last known leader {:?} only while it has no leader ({:?}) and an empty ISR ({:?})",
        state.last_known_elr,
        state.leader,
        state.isr
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetworkConfig;
    use crate::types::{LeaderEpoch, PartitionEpoch};
    use std::time::Duration;

    fn config(eligible_leader_replicas: bool, unclean: bool) -> ControllerConfig {
        ControllerConfig {
            brokers: nodes(&[1, 2, 3]),
            topics: Vec::new(),
            broker_session_timeout: Duration::from_secs(9),
            unclean_leader_election_enable: unclean,
            eligible_leader_replicas,
            min_insync_replicas: 2,
            network: NetworkConfig::default(),
        }
    }

    fn nodes(ids: &[u32]) -> Vec<NodeId> {
        ids.iter().copied().map(NodeId).collect()
    }

    fn partition(isr: &[u32], elr: &[u32], last_known_elr: &[u32]) -> PartitionState {
        PartitionState {
            replicas: nodes(&[1, 2, 3]),
            leader: None,
            leader_epoch: LeaderEpoch(4),
            partition_epoch: PartitionEpoch(9),
            isr: nodes(isr),
            elr: nodes(elr),
            last_known_elr: nodes(last_known_elr),
        }
    }

    #[test]
    fn the_election_order_is_isr_then_elr_then_the_last_known_leader_then_unclean() {
        let all_live = |_| true;
        let elr_on = config(true, true);
        assert_eq!(choose_leader(&elr_on, &partition(&[3], &[2], &[]), all_live), Some((NodeId(3), Election::Isr)));
        assert_eq!(choose_leader(&elr_on, &partition(&[], &[3, 2], &[1]), all_live), Some((NodeId(2), Election::Elr)), "replica order");
        assert_eq!(choose_leader(&elr_on, &partition(&[], &[], &[3]), all_live), Some((NodeId(3), Election::LastKnownLeader)), "before any unclean election");
        assert_eq!(choose_leader(&elr_on, &partition(&[], &[], &[]), all_live), Some((NodeId(1), Election::Unclean)));
        assert_eq!(choose_leader(&config(true, false), &partition(&[], &[], &[]), all_live), None, "unclean election off");
    }

    #[test]
    fn an_elr_member_or_last_known_leader_waits_while_it_or_an_isr_member_is_not_live() {
        let elr_on = config(true, false);
        let only = |broker: u32| move |replica: NodeId| replica == NodeId(broker);
        assert_eq!(choose_leader(&elr_on, &partition(&[1], &[2], &[]), only(2)), None, "Kafka elects from the ELR only once the ISR is empty");
        assert_eq!(choose_leader(&elr_on, &partition(&[], &[], &[3]), only(2)), None, "KAFKA-19522: not a fenced last known leader");
        assert_eq!(choose_leader(&elr_on, &partition(&[], &[1], &[3]), only(3)), None, "an ELR member, even fenced, comes first");
        assert_eq!(choose_leader(&config(false, false), &partition(&[], &[], &[3]), only(3)), None, "ELR off");
    }

    #[test]
    fn emptying_the_isr_remembers_the_leader_and_an_election_forgets_it() {
        let elr_on = config(true, false);
        let mut state = PartitionState { leader: Some(NodeId(1)), ..partition(&[1], &[2], &[]) };
        change_isr(&elr_on, &mut state, Vec::new(), Some(NodeId(1)));
        state.leader = None;
        assert_eq!((state.isr.clone(), state.elr.clone(), state.last_known_elr.clone()), (nodes(&[]), nodes(&[2]), nodes(&[1])), "the leader left after an unclean shutdown, but stays the last known one");
        assert_consistent(&TopicPartition::new("t", 0), &state);
        change_isr(&elr_on, &mut state, Vec::new(), Some(NodeId(2)));
        assert_eq!((state.elr.clone(), state.last_known_elr.clone()), (nodes(&[]), nodes(&[1])), "the ISR was already empty: the last known leader stays");
        elect(&elr_on, &mut state, NodeId(1), Election::LastKnownLeader);
        assert_eq!((state.leader, state.isr.clone(), state.elr.clone(), state.last_known_elr.clone()), (Some(NodeId(1)), nodes(&[1]), nodes(&[]), nodes(&[])));
        assert_consistent(&TopicPartition::new("t", 0), &state);
        let mut state = PartitionState { leader: Some(NodeId(1)), ..partition(&[1], &[], &[]) };
        change_isr(&config(false, false), &mut state, Vec::new(), None);
        assert!(state.last_known_elr.is_empty(), "ELR off: nothing to remember");
    }
}
