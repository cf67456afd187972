//! KRaft's controller quorum (KIP-595), sans-IO: one voter of a Raft quorum
//! that replicates `__cluster_metadata` by fetching, as Kafka's
//! `KafkaRaftClient` does, rather than by AppendEntries pushes.
//!
//! - Epochs and votes: a candidate bumps the epoch and asks every voter; a
//!   voter grants one vote per epoch, and only to a candidate whose log is at
//!   least as up to date as its own (last epoch, then log end offset).
//! - The elected leader appends a LeaderChange control record (its epoch's
//!   first offset) and announces itself with BeginQuorumEpoch.
//! - Followers fetch from the leader with the offset they want and the epoch
//!   of their last record. A fetch that diverges from the leader's log gets the
//!   leader's end offset for that epoch back (DivergingEpoch), and the follower
//!   truncates to it (as KIP-320 does for partitions).
//! - The high watermark is the largest offset a majority of voters has
//!   fetched up to, once the leader's own epoch start is below it: a leader
//!   never commits an older epoch's records by counting replicas alone.
//! - A follower that cannot fetch for `quorum.fetch.timeout.ms` starts an
//!   election; a candidate that does not win within
//!   `quorum.election.timeout.ms` tries again in a higher epoch after a random
//!   backoff (up to `quorum.election.backoff.max.ms`); a leader that has not
//!   heard from a majority within 1.5 fetch timeouts resigns (KIP-595's check
//!   quorum, `LeaderState.timeUntilCheckQuorumExpires`).
//! - The epoch, the vote and the log are durable before a node answers
//!   (`QuorumDurable`): a voter that restarts has forgotten nothing it promised.
//!
//! - Pre-vote (KIP-996, `pre_vote`): a node that would start an election
//!   first asks whether it could win, without bumping the epoch. A voter that
//!   still hears from its leader says no, so a node cut off and back again
//!   does not depose a healthy leader.
//!
//! - Observers (KIP-595's non-voting replicas: brokers) fetch the log as
//!   followers do, from the leader they find by asking any voter, but never
//!   vote, stand for election or count towards the high watermark.
//!
//! Not yet here: snapshots (the log is kept whole).

pub mod link;
#[cfg(test)]
mod tests;

use crate::types::NodeId;
use crate::Instant;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// `controller.quorum.retry.backoff.ms`: an observer that found no leader asks again this soon.
const RETRY_BACKOFF: Duration = Duration::from_millis(20);

/// The quorum's timing, under Kafka's names, with Kafka's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumConfig {
    /// `controller.quorum.voters`, by node id.
    pub voters: Vec<NodeId>,
    /// `controller.quorum.fetch.timeout.ms` (2000).
    pub fetch_timeout: Duration,
    /// `controller.quorum.election.timeout.ms` (1000).
    pub election_timeout: Duration,
    /// `controller.quorum.election.backoff.max.ms` (1000).
    pub election_backoff_max: Duration,
    /// `controller.quorum.request.timeout.ms` (2000).
    pub request_timeout: Duration,
    /// How long the leader holds a fetch with nothing new (the fetch's max wait).
    pub fetch_max_wait: Duration,
    /// Records one fetch response carries at most.
    pub fetch_max_records: usize,
    /// KIP-996's pre-vote before every election.
    pub pre_vote: bool,
    /// A deliberately injected bug behind a test-only switch, so tests can
    /// show that the quorum's checks catch it.
    pub mutation: Option<QuorumMutation>,
}

/// Test-only bugs (`QuorumConfig::mutation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuorumMutation {
    /// Votes are granted without KIP-595's log-up-to-date check.
    VoteWithoutLogCheck,
    /// The quorum's disk is not fsynced (the simulator loses it at power
    /// loss); the quorum itself runs as usual.
    NoFsync,
}

impl QuorumConfig {
    pub fn new(voters: Vec<NodeId>) -> QuorumConfig {
        QuorumConfig {
            voters,
            fetch_timeout: Duration::from_millis(2000),
            election_timeout: Duration::from_millis(1000),
            election_backoff_max: Duration::from_millis(1000),
            request_timeout: Duration::from_millis(2000),
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_records: 64,
            pre_vote: false,
            mutation: None,
        }
    }

    fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

/// One record of the metadata log and the epoch of the leader that appended it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub epoch: u32,
    /// None for the LeaderChange control record a new leader begins its epoch with.
    pub record: Option<Bytes>,
}

/// What a voter keeps on disk: Kafka's `quorum-state` file (epoch, vote and
/// the leader it knows) and the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumDurable {
    pub epoch: u32,
    pub voted_for: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub log: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchResult {
    /// Records from the fetch offset (maybe none), and the leader's high watermark.
    Records { base_offset: u64, records: Vec<Entry>, high_watermark: u64 },
    /// The fetch's last epoch is not the leader's at that offset: truncate to
    /// `end_offset`, the leader's end of the largest epoch <= the one asked.
    Diverging { epoch: u32, end_offset: u64 },
    /// The fetcher's epoch is not the leader's: the response's epoch and leader say which is.
    FencedEpoch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuorumMessage {
    /// A vote request; with `pre_vote` (KIP-996), `epoch` is the one the
    /// candidate would stand in, and nobody's epoch or vote changes.
    Vote { epoch: u32, last_epoch: u32, log_end_offset: u64, pre_vote: bool },
    /// With `pre_vote`, `epoch` is the voter's own. `leader` is the leader the
    /// voter knows in its epoch (Kafka's VoteResponse carries it too).
    VoteResponse { epoch: u32, granted: bool, pre_vote: bool, leader: Option<NodeId> },
    BeginQuorumEpoch { epoch: u32 },
    /// `correlation_id` pairs a response with its request, as Kafka's request
    /// header does: a follower acts only on the answer to its fetch in flight.
    Fetch { epoch: u32, fetch_offset: u64, last_fetched_epoch: u32, correlation_id: u64 },
    FetchResponse { epoch: u32, leader: Option<NodeId>, result: FetchResult, correlation_id: u64 },
}

impl QuorumMessage {
    /// Whether this answers a request, and so travels back on the
    /// connection the request came on.
    pub fn is_response(&self) -> bool {
        matches!(self, QuorumMessage::VoteResponse { .. } | QuorumMessage::FetchResponse { .. })
    }

    pub fn api(&self) -> &'static str {
        match self {
            QuorumMessage::Vote { .. } | QuorumMessage::VoteResponse { .. } => "Vote",
            QuorumMessage::BeginQuorumEpoch { .. } => "BeginQuorumEpoch",
            QuorumMessage::Fetch { .. } | QuorumMessage::FetchResponse { .. } => "QuorumFetch",
        }
    }

    fn epoch(&self) -> u32 {
        match self {
            QuorumMessage::Vote { epoch, .. }
            | QuorumMessage::VoteResponse { epoch, .. }
            | QuorumMessage::BeginQuorumEpoch { epoch }
            | QuorumMessage::Fetch { epoch, .. }
            | QuorumMessage::FetchResponse { epoch, .. } => *epoch,
        }
    }
}

/// A follower's progress as its leader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerProgress {
    /// Every offset below this is on the follower, as its last valid fetch said.
    end_offset: u64,
    last_fetch: Option<Instant>,
}

/// A fetch the leader holds until there is something new or its wait ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkedFetch {
    replica: NodeId,
    correlation_id: u64,
    fetch_offset: u64,
    high_watermark: u64,
    until: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// No leader known in this epoch; an election starts at `election_at`.
    Unattached { election_at: Instant },
    /// KIP-996: asking for pre-votes in the current epoch.
    Prospective { granted: BTreeSet<NodeId>, election_at: Instant },
    Candidate { granted: BTreeSet<NodeId>, election_at: Instant },
    Leader { epoch_start: u64, followers: BTreeMap<NodeId, FollowerProgress>, parked: Vec<ParkedFetch>, check_quorum_at: Instant, announce_at: Instant },
    /// `fetch_in_flight`: when the fetch in flight was sent, and its correlation id.
    Follower { leader: NodeId, fetch_deadline: Instant, fetch_in_flight: Option<(Instant, u64)> },
}

pub struct QuorumNode {
    id: NodeId,
    config: QuorumConfig,
    durable: QuorumDurable,
    high_watermark: u64,
    role: Role,
    /// splitmix64 state for the election backoff; seeded by the caller.
    jitter_state: u64,
    next_correlation_id: u64,
}

impl QuorumNode {
    /// A voter, or an observer (an id not among the voters), starting or
    /// restarting from what it kept on disk. Its high watermark is unknown
    /// until a leader tells it: 0. A follower goes back to the leader its
    /// quorum state names; a leader does not resume leading (Kafka's Resigned
    /// state): it waits for an election. An observer that knows no leader asks
    /// the first voter.
    pub fn recover(now: Instant, id: NodeId, config: QuorumConfig, durable: QuorumDurable, jitter_seed: u64, out: &mut Vec<(NodeId, QuorumMessage)>) -> QuorumNode {
        assert!(!config.voters.is_empty(), "a quorum has voters");
        let leader = durable.leader;
        let mut node = QuorumNode { id, config, durable, high_watermark: 0, role: Role::Unattached { election_at: now }, jitter_state: jitter_seed, next_correlation_id: 0 };
        match leader {
            Some(leader) if leader != id => node.become_follower(now, leader, out),
            _ if !node.is_voter() => node.ask_next_voter(now, out),
            // The only voter stands at once (KafkaRaftClient's `isOnlyVoter`).
            _ if node.config.majority() == 1 => node.role = Role::Unattached { election_at: now },
            _ => node.role = Role::Unattached { election_at: now + node.election_wait() },
        }
        node
    }

    /// Whether this node votes; if not, it observes.
    pub fn is_voter(&self) -> bool {
        self.config.voters.contains(&self.id)
    }

    /// An observer without a leader fetches from the voter after the one it
    /// tried last; a voter that does not lead answers with the leader it knows.
    fn ask_next_voter(&mut self, now: Instant, out: &mut Vec<(NodeId, QuorumMessage)>) {
        let last = self.durable.leader.and_then(|leader| self.config.voters.iter().position(|voter| *voter == leader));
        let next = self.config.voters[last.map_or(0, |index| (index + 1) % self.config.voters.len())];
        self.become_follower(now, next, out);
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn epoch(&self) -> u32 {
        self.durable.epoch
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader { .. })
    }

    /// The leader this node follows or is, in its epoch.
    pub fn leader(&self) -> Option<NodeId> {
        match self.role {
            Role::Leader { .. } => Some(self.id),
            Role::Follower { leader, .. } => Some(leader),
            _ => None,
        }
    }

    pub fn log(&self) -> &[Entry] {
        &self.durable.log
    }

    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    /// What must survive a crash; the shell writes it before it sends anything
    /// a step produced (Kafka fsyncs the quorum state and the log).
    pub fn durable(&self) -> &QuorumDurable {
        &self.durable
    }

    fn log_end_offset(&self) -> u64 {
        self.durable.log.len() as u64
    }

    fn last_epoch(&self) -> u32 {
        self.durable.log.last().map_or(0, |entry| entry.epoch)
    }

    /// The largest epoch <= `epoch` in the log and the offset where it ends
    /// (Kafka's `endOffsetForEpoch`); (0, 0) if the log has none.
    fn end_offset_for_epoch(&self, epoch: u32) -> (u32, u64) {
        let log = &self.durable.log;
        let end = log.partition_point(|entry| entry.epoch <= epoch);
        match end {
            0 => (0, 0),
            end => (log[end - 1].epoch, end as u64),
        }
    }

    /// A random wait of `election_timeout` plus up to `election_backoff_max`.
    fn election_wait(&mut self) -> Duration {
        self.jitter_state = self.jitter_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.jitter_state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^= mixed >> 31;
        let backoff_micros = self.config.election_backoff_max.as_micros() as u64;
        self.config.election_timeout + Duration::from_micros(if backoff_micros == 0 { 0 } else { mixed % backoff_micros })
    }

    fn others(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.config.voters.iter().copied().filter(move |voter| *voter != self.id)
    }

    /// Appends `record` as the leader; its offset, or None when not leading.
    pub fn append(&mut self, now: Instant, record: Bytes, out: &mut Vec<(NodeId, QuorumMessage)>) -> Option<u64> {
        if !self.is_leader() {
            return None;
        }
        let offset = self.log_end_offset();
        self.durable.log.push(Entry { epoch: self.durable.epoch, record: Some(record) });
        self.leader_progressed(now, out);
        Some(offset)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.role {
            Role::Unattached { election_at } | Role::Prospective { election_at, .. } | Role::Candidate { election_at, .. } => Some(*election_at),
            Role::Follower { fetch_deadline, fetch_in_flight, .. } => Some(fetch_in_flight.map_or(*fetch_deadline, |(sent, _)| (*fetch_deadline).min(sent + self.config.request_timeout))),
            Role::Leader { parked, check_quorum_at, announce_at, .. } => {
                let parked = parked.iter().map(|fetch| fetch.until).min();
                crate::time::earliest(parked, Some((*check_quorum_at).min(*announce_at)))
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<(NodeId, QuorumMessage)>) {
        if !self.is_voter() {
            return self.observer_timeout(now, out);
        }
        match &mut self.role {
            Role::Unattached { election_at } | Role::Prospective { election_at, .. } | Role::Candidate { election_at, .. } if *election_at <= now => self.start_election(now, out),
            Role::Follower { fetch_deadline, .. } if *fetch_deadline <= now => self.start_election(now, out),
            Role::Follower { fetch_in_flight: Some((sent, _)), .. } if *sent + self.config.request_timeout <= now => self.send_fetch(now, out),
            Role::Leader { .. } => self.leader_timeout(now, out),
            _ => {}
        }
    }

    /// An observer never stands for election: when its leader goes quiet, it
    /// asks another voter who leads.
    fn observer_timeout(&mut self, now: Instant, out: &mut Vec<(NodeId, QuorumMessage)>) {
        match &self.role {
            Role::Follower { fetch_deadline, .. } if *fetch_deadline <= now => self.ask_next_voter(now, out),
            Role::Follower { fetch_in_flight: Some((sent, _)), .. } if *sent + self.config.request_timeout <= now => self.send_fetch(now, out),
            Role::Follower { .. } => {}
            _ => self.ask_next_voter(now, out),
        }
    }

    /// An election is due: with pre-vote, first ask whether it could be won.
    fn start_election(&mut self, now: Instant, out: &mut Vec<(NodeId, QuorumMessage)>) {
        if !self.config.pre_vote || self.config.majority() == 1 {
            return self.start_candidacy(now, out);
        }
        let election_at = now + self.election_wait();
        self.role = Role::Prospective { granted: BTreeSet::from([self.id]), election_at };
        let (epoch, last_epoch, log_end_offset) = (self.durable.epoch + 1, self.last_epoch(), self.log_end_offset());
        let requests: Vec<NodeId> = self.others().collect();
        for voter in requests {
            out.push((voter, QuorumMessage::Vote { epoch, last_epoch, log_end_offset, pre_vote: true }));
        }
    }

    fn start_candidacy(&mut self, now: Instant, out: &mut Vec<(NodeId, QuorumMessage)>) {
        self.durable.epoch += 1;
        self.durable.voted_for = Some(self.id);
        self.durable.leader = None;
        let election_at = now + self.election_wait();
        self.role = Role::Candidate { granted: BTreeSet::from([self.id]), election_at };
        if self.config.majority() == 1 {
            return self.become_leader(now, out);
        }
        let (epoch, last_epoch, log_end_offset) = (self.durable.epoch, self.last_epoch(), self.log_end_offset());
        let requests: Vec<NodeId> = self.others().collect();
        for voter in requests {
            out.push((voter, QuorumMessage::Vote { epoch, last_epoch, log_end_offset, pre_vote: false }));
        }
    }

    fn become_leader(&mut self, now: Instant, out: &mut Vec<(NodeId, QuorumMessage)>) {
        let epoch_start = self.log_end_offset();
        self.durable.leader = Some(self.id);
        self.durable.log.push(Entry { epoch: self.durable.epoch, record: None });
        let followers = self.others().map(|voter| (voter, FollowerProgress { end_offset: 0, last_fetch: None })).collect();
        self.role = Role::Leader { epoch_start, followers, parked: Vec::new(), check_quorum_at: now + self.check_quorum_interval(), announce_at: now };
        self.leader_timeout(now, out);
        self.leader_progressed(now, out);
    }

    fn check_quorum_interval(&self) -> Duration {
        self.config.fetch_timeout + self.config.fetch_timeout / 2
    }

    /// A higher epoch was seen: this node follows `leader` in it if one is
    /// named, else waits for one, its vote unspent.
    fn transition_to_epoch(&mut self, now: Instant, epoch: u32, leader: Option<NodeId>, out: &mut Vec<(NodeId, QuorumMessage)>) {
        if epoch > self.durable.epoch {
            self.durable.epoch = epoch;
            self.durable.voted_for = None;
            self.durable.leader = None;
        }
        match leader {
            Some(leader) if leader != self.id => self.become_follower(now, leader, out),
            _ => {
                // An observer waits as briefly as a voter would before it asks around.
                let election_at = now + self.election_wait();
                self.role = Role::Unattached { election_at };
            }
        }
    }

    fn become_follower(&mut self, now: Instant, leader: NodeId, out: &mut Vec<(NodeId, QuorumMessage)>) {
        self.durable.leader = Some(leader);
        self.role = Role::Follower { leader, fetch_deadline: now + self.config.fetch_timeout, fetch_in_flight: None };
        self.send_fetch(now, out);
    }

    fn send_fetch(&mut self, now: Instant, out: &mut Vec<(NodeId, QuorumMessage)>) {
        let (epoch, fetch_offset, last_fetched_epoch, correlation_id) = (self.durable.epoch, self.log_end_offset(), self.last_epoch(), self.next_correlation_id);
        if let Role::Follower { leader, fetch_in_flight, .. } = &mut self.role {
            self.next_correlation_id += 1;
            *fetch_in_flight = Some((now, correlation_id));
            out.push((*leader, QuorumMessage::Fetch { epoch, fetch_offset, last_fetched_epoch, correlation_id }));
        }
    }

    pub fn handle_message(&mut self, now: Instant, from: NodeId, message: QuorumMessage, out: &mut Vec<(NodeId, QuorumMessage)>) {
        // Observers only fetch; everything else comes from voters.
        let from_voter = self.config.voters.contains(&from);
        if from == self.id || !from_voter && !matches!(message, QuorumMessage::Fetch { .. }) {
            return;
        }
        let epoch = message.epoch();
        // A pre-vote request names an epoch nobody is in yet.
        let proposed = matches!(message, QuorumMessage::Vote { pre_vote: true, .. });
        if epoch > self.durable.epoch && !proposed {
            // A newer epoch: its leader is known from a BeginQuorumEpoch or a
            // fetch response that names it, otherwise not yet.
            let leader = match &message {
                QuorumMessage::BeginQuorumEpoch { .. } => Some(from),
                QuorumMessage::FetchResponse { leader, .. } => *leader,
                _ => None,
            };
            self.transition_to_epoch(now, epoch, leader, out);
        }
        match message {
            QuorumMessage::Vote { epoch, last_epoch, log_end_offset, pre_vote: false } => self.handle_vote(now, from, epoch, (last_epoch, log_end_offset), out),
            QuorumMessage::Vote { epoch, last_epoch, log_end_offset, pre_vote: true } => self.handle_pre_vote(now, from, epoch, (last_epoch, log_end_offset), out),
            QuorumMessage::VoteResponse { epoch, granted, pre_vote: false, .. } => self.handle_vote_response(now, from, epoch, granted, out),
            QuorumMessage::VoteResponse { epoch, granted, pre_vote: true, leader } => self.handle_pre_vote_response(now, from, epoch, granted, leader, out),
            QuorumMessage::BeginQuorumEpoch { epoch } => {
                if epoch == self.durable.epoch && self.leader().is_none() {
                    self.become_follower(now, from, out);
                }
            }
            QuorumMessage::Fetch { epoch, fetch_offset, last_fetched_epoch, correlation_id } => self.handle_fetch(now, from, epoch, (fetch_offset, last_fetched_epoch), correlation_id, out),
            QuorumMessage::FetchResponse { epoch, leader, result, correlation_id } => self.handle_fetch_response(now, from, (epoch, leader, correlation_id), result, out),
        }
    }

    /// KIP-595's vote: one per epoch, to a candidate whose log is at least as
    /// up to date as this voter's, and never while a leader of the epoch is known.
    fn handle_vote(&mut self, now: Instant, candidate: NodeId, epoch: u32, candidate_log: (u32, u64), out: &mut Vec<(NodeId, QuorumMessage)>) {
        let up_to_date = candidate_log >= (self.last_epoch(), self.log_end_offset()) || self.config.mutation == Some(QuorumMutation::VoteWithoutLogCheck);
        let free = match self.durable.voted_for {
            Some(voted) => voted == candidate,
            None => self.leader().is_none(),
        };
        let granted = epoch == self.durable.epoch && free && up_to_date && !matches!(self.role, Role::Leader { .. } | Role::Candidate { .. } | Role::Prospective { .. });
        if granted {
            self.durable.voted_for = Some(candidate);
            if let Role::Unattached { election_at } = &mut self.role {
                *election_at = now + self.config.election_timeout.max(self.config.fetch_timeout);
            }
        }
        out.push((candidate, QuorumMessage::VoteResponse { epoch: self.durable.epoch, granted, pre_vote: false, leader: self.leader() }));
    }

    /// KIP-996's pre-vote: would this voter vote for the candidate in
    /// `epoch`? Not while it leads or still hears from its leader (its last
    /// fetch answered within the fetch timeout), and only for a log at least
    /// as up to date. Nothing changes here: no epoch, no vote.
    fn handle_pre_vote(&mut self, now: Instant, candidate: NodeId, epoch: u32, candidate_log: (u32, u64), out: &mut Vec<(NodeId, QuorumMessage)>) {
        let up_to_date = candidate_log >= (self.last_epoch(), self.log_end_offset()) || self.config.mutation == Some(QuorumMutation::VoteWithoutLogCheck);
        let hears_leader = match &self.role {
            Role::Leader { .. } => true,
            Role::Follower { fetch_deadline, .. } => *fetch_deadline > now,
            _ => false,
        };
        let granted = epoch > self.durable.epoch && up_to_date && !hears_leader;
        out.push((candidate, QuorumMessage::VoteResponse { epoch: self.durable.epoch, granted, pre_vote: true, leader: self.leader() }));
    }

    fn handle_pre_vote_response(&mut self, now: Instant, voter: NodeId, epoch: u32, granted: bool, leader: Option<NodeId>, out: &mut Vec<(NodeId, QuorumMessage)>) {
        let majority = self.config.majority();
        if !matches!(self.role, Role::Prospective { .. }) || epoch > self.durable.epoch {
            return;
        }
        if !granted {
            // KIP-996: a voter that still hears the leader names it; follow it again.
            if let Some(leader) = leader.filter(|leader| epoch == self.durable.epoch && *leader != self.id) {
                self.become_follower(now, leader, out);
            }
            return;
        }
        let Role::Prospective { granted: votes, .. } = &mut self.role else { return };
        votes.insert(voter);
        if votes.len() >= majority {
            self.start_candidacy(now, out);
        }
    }

    fn handle_vote_response(&mut self, now: Instant, voter: NodeId, epoch: u32, granted: bool, out: &mut Vec<(NodeId, QuorumMessage)>) {
        let majority = self.config.majority();
        let Role::Candidate { granted: votes, .. } = &mut self.role else { return };
        if epoch != self.durable.epoch || !granted {
            return;
        }
        votes.insert(voter);
        if votes.len() >= majority {
            self.become_leader(now, out);
        }
    }

    fn handle_fetch(&mut self, now: Instant, replica: NodeId, epoch: u32, (fetch_offset, last_fetched_epoch): (u64, u32), correlation_id: u64, out: &mut Vec<(NodeId, QuorumMessage)>) {
        let leader_epoch = self.durable.epoch;
        if epoch != leader_epoch || !self.is_leader() {
            out.push((replica, QuorumMessage::FetchResponse { epoch: leader_epoch, leader: self.leader(), result: FetchResult::FencedEpoch, correlation_id }));
            return;
        }
        let (end_epoch, end_offset) = self.end_offset_for_epoch(last_fetched_epoch);
        if fetch_offset > 0 && (end_epoch != last_fetched_epoch || end_offset < fetch_offset) || fetch_offset > self.log_end_offset() {
            let result = FetchResult::Diverging { epoch: end_epoch, end_offset: end_offset.min(fetch_offset) };
            out.push((replica, QuorumMessage::FetchResponse { epoch: leader_epoch, leader: Some(self.id), result, correlation_id }));
            return;
        }
        let high_watermark = self.high_watermark;
        let Role::Leader { followers, parked, .. } = &mut self.role else { unreachable!("checked above") };
        // An observer's fetch is served, but counts for nothing.
        if let Some(progress) = followers.get_mut(&replica) {
            progress.end_offset = fetch_offset;
            progress.last_fetch = Some(now);
        }
        parked.retain(|fetch| fetch.replica != replica);
        parked.push(ParkedFetch { replica, correlation_id, fetch_offset, high_watermark, until: now + self.config.fetch_max_wait });
        self.leader_progressed(now, out);
    }

    /// The leader's log or high watermark may have moved: advance the high
    /// watermark, then answer the parked fetches that have something new.
    fn leader_progressed(&mut self, now: Instant, out: &mut Vec<(NodeId, QuorumMessage)>) {
        let log_end = self.log_end_offset();
        let majority = self.config.majority();
        let Role::Leader { epoch_start, followers, .. } = &self.role else { return };
        let mut ends: Vec<u64> = followers.values().map(|progress| progress.end_offset).chain([log_end]).collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        let majority_end = ends[majority - 1];
        // Only once the epoch's own first record is committed (KIP-595, as Raft's §5.4.2).
        if majority_end > *epoch_start && majority_end > self.high_watermark {
            self.high_watermark = majority_end;
        }
        self.answer_parked(now, false, out);
    }

    fn answer_parked(&mut self, now: Instant, expired_only: bool, out: &mut Vec<(NodeId, QuorumMessage)>) {
        let (log_end, high_watermark, epoch, id, max_records) = (self.log_end_offset(), self.high_watermark, self.durable.epoch, self.id, self.config.fetch_max_records);
        let Role::Leader { parked, .. } = &mut self.role else { return };
        let mut still = Vec::new();
        for fetch in std::mem::take(parked) {
            let news = fetch.fetch_offset < log_end || fetch.high_watermark < high_watermark;
            if (news && !expired_only) || fetch.until <= now {
                let end = log_end.min(fetch.fetch_offset + max_records as u64);
                let records = self.durable.log[fetch.fetch_offset as usize..end as usize].to_vec();
                let result = FetchResult::Records { base_offset: fetch.fetch_offset, records, high_watermark };
                out.push((fetch.replica, QuorumMessage::FetchResponse { epoch, leader: Some(id), result, correlation_id: fetch.correlation_id }));
            } else {
                still.push(fetch);
            }
        }
        if let Role::Leader { parked, .. } = &mut self.role {
            *parked = still;
        }
    }

    fn leader_timeout(&mut self, now: Instant, out: &mut Vec<(NodeId, QuorumMessage)>) {
        self.answer_parked(now, true, out);
        let (epoch, majority, interval) = (self.durable.epoch, self.config.majority(), self.check_quorum_interval());
        let announce_every = self.config.fetch_timeout / 2;
        let Role::Leader { followers, check_quorum_at, announce_at, .. } = &mut self.role else { return };
        if *announce_at <= now {
            // BeginQuorumEpoch until each voter has fetched in this epoch.
            for (voter, progress) in followers.iter() {
                if progress.last_fetch.is_none() {
                    out.push((*voter, QuorumMessage::BeginQuorumEpoch { epoch }));
                }
            }
            *announce_at = now + announce_every;
        }
        if *check_quorum_at <= now {
            let recent = followers.values().filter(|progress| progress.last_fetch.is_some_and(|at| at + interval > now)).count() + 1;
            if recent < majority {
                // Check quorum: a leader cut off from a majority resigns.
                self.durable.leader = None;
                let election_at = now + self.election_wait();
                self.role = Role::Unattached { election_at };
                return;
            }
            *check_quorum_at = now + interval;
        }
    }

    /// `header`: the response's epoch, the leader it names, its correlation id.
    fn handle_fetch_response(&mut self, now: Instant, from: NodeId, header: (u32, Option<NodeId>, u64), result: FetchResult, out: &mut Vec<(NodeId, QuorumMessage)>) {
        let (epoch, leader, correlation_id) = header;
        if epoch < self.durable.epoch {
            return;
        }
        if leader.is_some() && leader != self.leader() && self.leader().is_none() {
            if let Some(leader) = leader.filter(|leader| *leader != self.id) {
                self.become_follower(now, leader, out);
            }
            return;
        }
        let observer = !self.is_voter();
        let Role::Follower { leader: following, fetch_deadline, fetch_in_flight } = &mut self.role else { return };
        // Only the answer to the fetch in flight: an older one (its fetch
        // timed out and went again) answers for an offset the log has left.
        if *following != from || fetch_in_flight.map(|(_, id)| id) != Some(correlation_id) {
            return;
        }
        *fetch_in_flight = None;
        match result {
            FetchResult::Records { base_offset, records, high_watermark } => {
                *fetch_deadline = now + self.config.fetch_timeout;
                if base_offset == self.durable.log.len() as u64 {
                    self.durable.log.extend(records);
                    let log_end = self.durable.log.len() as u64;
                    self.high_watermark = self.high_watermark.max(high_watermark.min(log_end));
                }
            }
            FetchResult::Diverging { end_offset, .. } => {
                *fetch_deadline = now + self.config.fetch_timeout;
                // With a test-only bug switched on, the quorum may break this on
                // purpose: the replica follows its leader, and the checkers
                // (`metadata-divergence`) must tell.
                assert!(end_offset >= self.high_watermark || self.config.mutation.is_some(), "quorum invariant: a leader never asks a follower to truncate below its high watermark");
                self.high_watermark = self.high_watermark.min(end_offset);
                self.durable.log.truncate(end_offset as usize);
            }
            FetchResult::FencedEpoch => {
                // Not the leader: follow the one it names (how an observer finds it).
                if let Some(leader) = leader.filter(|leader| *leader != from && *leader != self.id && epoch == self.durable.epoch) {
                    self.become_follower(now, leader, out);
                } else if observer {
                    // It knows no leader either: ask the next voter after
                    // `controller.quorum.retry.backoff.ms`, not a whole fetch timeout.
                    *fetch_deadline = now + RETRY_BACKOFF;
                }
                return;
            }
        }
        self.send_fetch(now, out);
    }
}
