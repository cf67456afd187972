//! Partition assignors, run by the group leader (client-side assignment, as in
//! Kafka's classic protocol): range, round-robin, sticky and cooperative-sticky.
//!
//! Every assignor is a pure function of the members' subscriptions and the
//! partition counts, with members and partitions in sorted order, so every
//! leader computes the same assignment from the same input.

use crate::coordinator::group::protocol::{Generation, MemberId, Subscription};
use crate::types::TopicPartition;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Assignor {
    Range,
    RoundRobin,
    Sticky,
    /// KIP-429: sticky, and a partition moving between members is first revoked
    /// (left unassigned for one generation), then assigned in a follow-up rebalance.
    CooperativeSticky,
}

/// Whether a rebalance revokes everything first (eager) or only what moves (KIP-429).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebalanceProtocol {
    Eager,
    Cooperative,
}

impl Assignor {
    pub const ALL: [Assignor; 4] = [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky, Assignor::CooperativeSticky];

    /// The name a member advertises in JoinGroup (Kafka's `name()`).
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::Sticky => "sticky",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    fn class_name(self) -> &'static str {
        match self {
            Assignor::Range => "org.apache.kafka.clients.consumer.RangeAssignor",
            Assignor::RoundRobin => "org.apache.kafka.clients.consumer.RoundRobinAssignor",
            Assignor::Sticky => "org.apache.kafka.clients.consumer.StickyAssignor",
            Assignor::CooperativeSticky => "org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
        }
    }

    /// `partition.assignment.strategy` accepts Kafka's class names or the short names.
    pub fn from_config_name(name: &str) -> Option<Assignor> {
        Assignor::ALL.into_iter().find(|assignor| assignor.name() == name || assignor.class_name() == name)
    }

    pub fn from_name(name: &str) -> Option<Assignor> {
        Assignor::ALL.into_iter().find(|assignor| assignor.name() == name)
    }

    pub fn supports_cooperative(self) -> bool {
        self == Assignor::CooperativeSticky
    }

    /// Every member's partitions. `partition_counts` holds the topics' sizes.
    pub fn assign(self, members: &[(MemberId, Subscription)], partition_counts: &BTreeMap<Arc<str>, u32>) -> BTreeMap<MemberId, Vec<TopicPartition>> {
        let mut assignment: BTreeMap<MemberId, Vec<TopicPartition>> = members.iter().map(|(member, _)| (member.clone(), Vec::new())).collect();
        match self {
            Assignor::Range => range(members, partition_counts, &mut assignment),
            Assignor::RoundRobin => round_robin(members, partition_counts, &mut assignment),
            Assignor::Sticky => sticky(members, partition_counts, &mut assignment),
            Assignor::CooperativeSticky => {
                sticky(members, partition_counts, &mut assignment);
                revoke_moving_partitions(members, &mut assignment);
            }
        }
        for partitions in assignment.values_mut() {
            partitions.sort();
        }
        assignment
    }
}

/// The protocol a consumer follows: cooperative only if every assignor it lists supports it (KIP-429).
pub fn rebalance_protocol(assignors: &[Assignor]) -> RebalanceProtocol {
    if !assignors.is_empty() && assignors.iter().all(|assignor| assignor.supports_cooperative()) {
        RebalanceProtocol::Cooperative
    } else {
        RebalanceProtocol::Eager
    }
}

fn subscribers<'a>(members: &'a [(MemberId, Subscription)], topic: &str) -> Vec<&'a MemberId> {
    let mut subscribed: Vec<&MemberId> = members.iter().filter(|(_, subscription)| subscription.topics.iter().any(|t| &**t == topic)).map(|(member, _)| member).collect();
    subscribed.sort();
    subscribed
}

/// Per topic, members in order get contiguous ranges; the first `count % members` get one more.
fn range(members: &[(MemberId, Subscription)], counts: &BTreeMap<Arc<str>, u32>, assignment: &mut BTreeMap<MemberId, Vec<TopicPartition>>) {
    for (topic, &count) in counts {
        let subscribed = subscribers(members, topic);
        if subscribed.is_empty() {
            continue;
        }
        let per_member = count / subscribed.len() as u32;
        let extra = count % subscribed.len() as u32;
        let mut next = 0;
        for (index, member) in subscribed.iter().enumerate() {
            let length = per_member + u32::from((index as u32) < extra);
            let partitions = assignment.get_mut(*member).expect("every member has an entry");
            partitions.extend((next..next + length).map(|partition| TopicPartition::new(topic.clone(), partition)));
            next += length;
        }
    }
}

/// Every partition of every topic in order, dealt to the subscribed members in turn.
fn round_robin(members: &[(MemberId, Subscription)], counts: &BTreeMap<Arc<str>, u32>, assignment: &mut BTreeMap<MemberId, Vec<TopicPartition>>) {
    let mut sorted: Vec<&MemberId> = members.iter().map(|(member, _)| member).collect();
    sorted.sort();
    let mut turn = 0usize;
    for (topic, &count) in counts {
        for partition in 0..count {
            let subscribed = subscribers(members, topic);
            if subscribed.is_empty() {
                break;
            }
            // The next member in the ring that subscribes to this topic.
            let member = loop {
                let candidate = sorted[turn % sorted.len()];
                turn += 1;
                if subscribed.contains(&candidate) {
                    break candidate;
                }
            };
            assignment.get_mut(member).expect("every member has an entry").push(TopicPartition::new(topic.clone(), partition));
        }
    }
}

/// Balanced (sizes differ by at most one) while keeping as many partitions as
/// possible where they are. Ownership claims from an older generation yield to
/// newer ones, as Kafka's sticky assignor does with its generation field.
fn sticky(members: &[(MemberId, Subscription)], counts: &BTreeMap<Arc<str>, u32>, assignment: &mut BTreeMap<MemberId, Vec<TopicPartition>>) {
    let all: Vec<TopicPartition> = counts.iter().flat_map(|(topic, &count)| (0..count).map(|partition| TopicPartition::new(topic.clone(), partition))).collect();
    let mut sorted: Vec<&(MemberId, Subscription)> = members.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    if sorted.is_empty() {
        return;
    }
    // The newest claim on each partition wins.
    let mut claims: BTreeMap<&TopicPartition, (Generation, &MemberId)> = BTreeMap::new();
    for (member, subscription) in &sorted {
        for partition in &subscription.owned_partitions {
            let subscribed = subscription.topics.contains(&partition.topic) && counts.get(&partition.topic).is_some_and(|&count| partition.partition < count);
            if !subscribed {
                continue;
            }
            let newer = claims.get(partition).is_none_or(|(generation, _)| subscription.generation > *generation);
            if newer {
                claims.insert(partition, (subscription.generation, member));
            }
        }
    }
    let member_count = sorted.len();
    let minimum = all.len() / member_count;
    let with_extra = all.len() % member_count;
    // Members keep their claims up to the quota; who may hold `minimum + 1` is
    // decided by who already holds the most, then by member id.
    let mut kept: BTreeMap<&MemberId, Vec<TopicPartition>> = BTreeMap::new();
    for (partition, (_, member)) in &claims {
        kept.entry(member).or_default().push((*partition).clone());
    }
    let mut by_size: Vec<&MemberId> = sorted.iter().map(|(member, _)| member).collect();
    by_size.sort_by(|a, b| kept.get(b).map_or(0, Vec::len).cmp(&kept.get(a).map_or(0, Vec::len)).then(a.cmp(b)));
    let quota: BTreeMap<&MemberId, usize> = by_size.iter().enumerate().map(|(index, member)| (*member, minimum + usize::from(index < with_extra))).collect();
    let mut assigned: BTreeSet<TopicPartition> = BTreeSet::new();
    for (member, partitions) in &mut kept {
        partitions.truncate(quota[member]);
        assigned.extend(partitions.iter().cloned());
        assignment.get_mut(*member).expect("every member has an entry").extend(partitions.iter().cloned());
    }
    for partition in all.into_iter().filter(|partition| !assigned.contains(partition)) {
        let member = by_size
            .iter()
            .filter(|member| assignment[**member].len() < quota[*member])
            .min_by(|a, b| assignment[**a].len().cmp(&assignment[**b].len()).then(a.cmp(b)))
            .expect("quotas add up to the partition count");
        assignment.get_mut(*member).expect("every member has an entry").push(partition);
    }
}

/// KIP-429: a partition another member still owns is left out this generation;
/// its owner revokes it and rejoins, and the follow-up rebalance assigns it.
fn revoke_moving_partitions(members: &[(MemberId, Subscription)], assignment: &mut BTreeMap<MemberId, Vec<TopicPartition>>) {
    let mut owner: BTreeMap<&TopicPartition, &MemberId> = BTreeMap::new();
    for (member, subscription) in members {
        for partition in &subscription.owned_partitions {
            owner.insert(partition, member);
        }
    }
    for (member, partitions) in assignment.iter_mut() {
        partitions.retain(|partition| owner.get(partition).is_none_or(|owner| *owner == member));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(name: &str, owned: &[u32]) -> (MemberId, Subscription) {
        let owned_partitions = owned.iter().map(|&partition| TopicPartition::new("t", partition)).collect();
        (name.into(), Subscription { topics: vec!["t".into()], owned_partitions, generation: Generation(1) })
    }

    fn counts(count: u32) -> BTreeMap<Arc<str>, u32> {
        [("t".into(), count)].into_iter().collect()
    }

    fn indexes(assignment: &BTreeMap<MemberId, Vec<TopicPartition>>, member: &str) -> Vec<u32> {
        assignment[member].iter().map(|tp| tp.partition).collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_extra_first() {
        let assignment = Assignor::Range.assign(&[member("b", &[]), member("a", &[])], &counts(5));
        assert_eq!(indexes(&assignment, "a"), vec![0, 1, 2]);
        assert_eq!(indexes(&assignment, "b"), vec![3, 4]);
    }

    #[test]
    fn round_robin_deals_in_turn() {
        let assignment = Assignor::RoundRobin.assign(&[member("a", &[]), member("b", &[])], &counts(5));
        assert_eq!(indexes(&assignment, "a"), vec![0, 2, 4]);
        assert_eq!(indexes(&assignment, "b"), vec![1, 3]);
    }

    #[test]
    fn sticky_keeps_what_members_own() {
        let assignment = Assignor::Sticky.assign(&[member("a", &[1, 2]), member("b", &[0]), member("c", &[])], &counts(3));
        assert_eq!(indexes(&assignment, "b"), vec![0]);
        assert_eq!(assignment["a"].len(), 1);
        assert_eq!(assignment["c"].len(), 1);
        assert!(indexes(&assignment, "a")[0] == 1 || indexes(&assignment, "a")[0] == 2);
    }

    /// KIP-429: the partition that moves from `a` to `c` is revoked first.
    #[test]
    fn cooperative_sticky_withholds_moving_partitions() {
        let assignment = Assignor::CooperativeSticky.assign(&[member("a", &[0, 1, 2]), member("c", &[])], &counts(3));
        assert_eq!(assignment["a"].len(), 2);
        assert!(assignment["c"].is_empty(), "c gets the moved partition only in the follow-up rebalance");
    }

    #[test]
    fn names_and_class_names_parse() {
        assert_eq!(Assignor::from_config_name("org.apache.kafka.clients.consumer.RoundRobinAssignor"), Some(Assignor::RoundRobin));
        assert_eq!(Assignor::from_config_name("cooperative-sticky"), Some(Assignor::CooperativeSticky));
        assert_eq!(Assignor::from_config_name("fair"), None);
        assert_eq!(rebalance_protocol(&[Assignor::Range, Assignor::CooperativeSticky]), RebalanceProtocol::Eager);
        assert_eq!(rebalance_protocol(&[Assignor::CooperativeSticky]), RebalanceProtocol::Cooperative);
    }

    proptest! {
        /// Every assignor gives each partition to at most one member; the
        /// non-cooperative ones give every partition to someone, balanced within one.
        #[test]
        fn assignments_are_disjoint_and_balanced(member_count in 1usize..6, count in 0u32..20, owned in proptest::collection::vec(0u32..20, 0..20)) {
            let members: Vec<(MemberId, Subscription)> = (0..member_count)
                .map(|index| {
                    let mine: Vec<u32> = owned.iter().enumerate().filter(|(position, _)| position % member_count == index).map(|(_, partition)| *partition).collect();
                    member(&format!("m{index}"), &mine)
                })
                .collect();
            for assignor in Assignor::ALL {
                let assignment = assignor.assign(&members, &counts(count));
                let mut seen = BTreeSet::new();
                for partitions in assignment.values() {
                    for partition in partitions {
                        prop_assert!(seen.insert(partition.clone()), "{assignor:?} gave {partition} twice");
                    }
                }
                if assignor != Assignor::CooperativeSticky {
                    prop_assert_eq!(seen.len(), count as usize);
                    let sizes: Vec<usize> = assignment.values().map(Vec::len).collect();
                    prop_assert!(sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0) <= 1, "{assignor:?} unbalanced: {sizes:?}");
                }
            }
        }
    }
}
