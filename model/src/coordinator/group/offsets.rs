//! Committed offsets: OffsetCommit fenced by generation and member, as Kafka's
//! classic protocol fences them, and OffsetFetch. A commit is applied to the
//! group's offsets only once its record committed in `__consumer_offsets`, so a
//! client is never told of an offset a successor coordinator would not load.

use super::protocol::{Generation, MemberId};
use super::state::{Group, Phase};
use crate::error::ErrorCode;
use crate::types::{Offset, TopicPartition};

/// Whether `group` accepts a commit from `member_id` in `generation`.
/// `generation` NONE with no member is a commit outside group management,
/// accepted only while the group has no members.
/// Kafka's `GroupCoordinator.validateOffsetCommit` and the phase check of
/// `doCommitOffsets`: a member commits in its current generation. A plain
/// OffsetCommit is taken while the group is Stable or PreparingRebalance (so a
/// member can commit in `onPartitionsRevoked`, before it rejoins) but not while
/// CompletingRebalance; a TxnOffsetCommit (KIP-447) in any phase, its
/// generation being what fences it.
pub fn validate_commit(group: Option<&Group>, generation: Generation, member_id: Option<&MemberId>, transactional: bool) -> Result<(), ErrorCode> {
    let simple = generation == Generation::NONE && member_id.is_none();
    let Some(group) = group else {
        return if simple { Ok(()) } else { Err(ErrorCode::UnknownMemberId) };
    };
    if simple {
        return if group.members.is_empty() { Ok(()) } else { Err(ErrorCode::UnknownMemberId) };
    }
    if group.phase == Phase::Dead {
        return Err(ErrorCode::NotCoordinator);
    }
    if !member_id.is_some_and(|member| group.members.contains_key(member)) {
        return Err(ErrorCode::UnknownMemberId);
    }
    if generation != group.generation {
        return Err(ErrorCode::IllegalGeneration);
    }
    match group.phase {
        Phase::CompletingRebalance if !transactional => Err(ErrorCode::RebalanceInProgress),
        _ => Ok(()),
    }
}

/// OffsetFetch: each partition's committed offset, None where nothing was committed.
pub fn fetch(group: Option<&Group>, partitions: &[TopicPartition]) -> Vec<(TopicPartition, Option<Offset>)> {
    partitions.iter().map(|partition| (partition.clone(), group.and_then(|group| group.offsets.get(partition).copied()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::group::records::{GroupRecord, MemberRecord};
    use crate::coordinator::group::protocol::Subscription;
    use crate::time::Instant;
    use crate::types::NodeId;
    use std::time::Duration;

    fn stable_group(generation: i32) -> Group {
        let member = MemberRecord {
            member_id: "m1".into(),
            client: NodeId(3001),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocols: vec!["range".into()],
            subscription: Subscription::default(),
            assignment: vec![],
        };
        let record = GroupRecord { group_id: "g".into(), generation: Generation(generation), protocol: Some("range".into()), leader: Some("m1".into()), members: vec![member] };
        Group::from_record(record, Instant::ZERO, Duration::ZERO)
    }

    #[test]
    fn commits_are_fenced_by_member_and_generation() {
        let mut group = stable_group(3);
        let member: MemberId = "m1".into();
        assert_eq!(validate_commit(Some(&group), Generation(3), Some(&member), false), Ok(()));
        assert_eq!(validate_commit(Some(&group), Generation(2), Some(&member), false), Err(ErrorCode::IllegalGeneration));
        assert_eq!(validate_commit(Some(&group), Generation(2), Some(&member), true), Err(ErrorCode::IllegalGeneration));
        assert_eq!(validate_commit(Some(&group), Generation(3), Some(&"m2".into()), false), Err(ErrorCode::UnknownMemberId));
        assert_eq!(validate_commit(Some(&group), Generation::NONE, None, false), Err(ErrorCode::UnknownMemberId));
        // In onPartitionsRevoked, before the member rejoins.
        group.phase = Phase::PreparingRebalance { deadline: Instant::ZERO, initial: false };
        assert_eq!(validate_commit(Some(&group), Generation(3), Some(&member), false), Ok(()));
        group.phase = Phase::CompletingRebalance;
        assert_eq!(validate_commit(Some(&group), Generation(3), Some(&member), false), Err(ErrorCode::RebalanceInProgress));
        assert_eq!(validate_commit(Some(&group), Generation(3), Some(&member), true), Ok(()));
        assert_eq!(validate_commit(None, Generation::NONE, None, false), Ok(()));
        assert_eq!(validate_commit(None, Generation(1), Some(&member), false), Err(ErrorCode::UnknownMemberId));
    }

    /// Only a commit with neither a generation nor a member is outside group
    /// management; a generation without a member claims a group membership the
    /// coordinator cannot check, and is refused.
    #[test]
    fn a_generation_without_a_member_is_not_a_simple_commit() {
        assert!(validate_commit(None, Generation(1), None, false).is_err());
        let mut group = stable_group(3);
        group.members.clear();
        assert!(validate_commit(Some(&group), Generation(3), None, false).is_err());
    }
}
