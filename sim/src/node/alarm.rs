//! Waiting for a node's next event: an arrival, or its next deadline.
//!
//! madsim's `Sleep` adds a timer to the runtime every time it is polled and found
//! pending, and a fresh `timeout` per turn of a node's loop adds one per turn.
//! Each of those timers later fires and wakes the node, mostly for nothing, and
//! every wake costs the scheduler a random draw. A node's deadline rarely moves
//! between turns, so the alarm arms madsim's timer once per deadline instead.

use futures::{Stream, StreamExt};
use madsim::time::Instant;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What ended the wait.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake<T> {
    /// The stream yielded an item, or ended (None).
    Arrival(Option<T>),
    /// The deadline passed with nothing arriving.
    Deadline,
}

/// The deadlines whose timers are armed and not yet due, for one task. There
/// are seldom more than two, so a plain list beats a tree (whose first insert
/// allocates a node, every time the set was emptied).
pub struct Alarm {
    armed: Vec<Instant>,
    time: madsim::time::TimeHandle,
}

impl Default for Alarm {
    /// An alarm on the current runtime's clock.
    fn default() -> Self {
        Alarm { armed: Vec::new(), time: madsim::time::TimeHandle::current() }
    }
}

impl Alarm {
    /// Waits for the next item of `arrivals` or for `deadline`, whichever comes
    /// first; an arrival wins a tie. madsim's one-millisecond minimum sleep applies.
    pub async fn next<S: Stream + Unpin>(&mut self, arrivals: &mut S, deadline: Option<Instant>) -> Wake<S::Item> {
        futures::future::poll_fn(|cx| self.poll_next(cx, arrivals, deadline)).await
    }

    fn poll_next<S: Stream + Unpin>(&mut self, cx: &mut Context<'_>, arrivals: &mut S, deadline: Option<Instant>) -> Poll<Wake<S::Item>> {
        if let Poll::Ready(item) = arrivals.poll_next_unpin(cx) {
            return Poll::Ready(Wake::Arrival(item));
        }
        let Some(deadline) = deadline else {
            return Poll::Pending;
        };
        let now = self.time.now_instant();
        if now >= deadline {
            return Poll::Ready(Wake::Deadline);
        }
        // Timers already due have fired; what is left still wakes this task.
        self.armed.retain(|armed| *armed > now);
        if !self.armed.contains(&deadline) {
            self.armed.push(deadline);
            // Polled once, the sleep leaves a timer that wakes this task at its
            // deadline (or a millisecond from now, madsim's minimum), and is dropped.
            let mut sleep = self.time.sleep_until(deadline);
            if Pin::new(&mut sleep).poll(cx).is_ready() {
                return Poll::Ready(Wake::Deadline);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run<F: Future<Output = ()> + 'static>(future: F) {
        let runtime = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
        runtime.block_on(future);
    }

    #[test]
    fn an_arrival_before_the_deadline_wins() {
        run(async {
            let (sender, mut arrivals) = futures::channel::mpsc::unbounded::<u32>();
            let start = Instant::now();
            let _sender = madsim::task::spawn(async move {
                madsim::time::sleep(Duration::from_millis(5)).await;
                sender.unbounded_send(7).unwrap();
            });
            let mut alarm = Alarm::default();
            assert_eq!(alarm.next(&mut arrivals, Some(start + Duration::from_millis(50))).await, Wake::Arrival(Some(7)));
            assert!(start.elapsed() < Duration::from_millis(6));
        });
    }

    #[test]
    fn the_deadline_wakes_at_its_time_and_an_unchanged_deadline_is_armed_once() {
        run(async {
            let (_sender, mut arrivals) = futures::channel::mpsc::unbounded::<u32>();
            let start = Instant::now();
            let deadline = start + Duration::from_millis(20);
            let mut alarm = Alarm::default();
            assert_eq!(alarm.next(&mut arrivals, Some(deadline)).await, Wake::Deadline);
            assert_eq!(start.elapsed().as_millis(), 20);
            assert!(alarm.armed.len() <= 1);
            // A deadline already past ends the wait at once.
            assert_eq!(alarm.next(&mut arrivals, Some(deadline)).await, Wake::Deadline);
            assert_eq!(start.elapsed().as_millis(), 20);
        });
    }

    #[test]
    fn no_deadline_waits_for_the_stream_to_end() {
        run(async {
            let (sender, mut arrivals) = futures::channel::mpsc::unbounded::<u32>();
            drop(sender);
            let mut alarm = Alarm::default();
            assert_eq!(alarm.next(&mut arrivals, None).await, Wake::Arrival(None));
        });
    }
}
