//! What the mock backend does on each call.

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How a call ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer `Ok(Reply)`.
    Succeed,
    /// Answer `Err(MockError)` of kind `Failed`.
    Fail,
    /// Never answer; the call ends only when its future is dropped (counted as cancelled).
    Hang,
    /// Panic when the response future is polled (after any latency).
    Panic,
    /// Panic inside `Service::call` itself, before a future exists.
    PanicInCall,
}

/// One scripted call: an [`Action`] taken after a latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// What the call does.
    pub action: Action,
    /// How long (tokio time) the call takes before it answers, fails or panics.
    pub latency: Duration,
}

impl Step {
    /// Succeed at once.
    #[must_use]
    pub const fn ok() -> Step {
        Step {
            action: Action::Succeed,
            latency: Duration::ZERO,
        }
    }

    /// Fail at once.
    #[must_use]
    pub const fn fail() -> Step {
        Step {
            action: Action::Fail,
            latency: Duration::ZERO,
        }
    }

    /// Hang until cancelled.
    #[must_use]
    pub const fn hang() -> Step {
        Step {
            action: Action::Hang,
            latency: Duration::ZERO,
        }
    }

    /// Panic when polled.
    #[must_use]
    pub const fn panic() -> Step {
        Step {
            action: Action::Panic,
            latency: Duration::ZERO,
        }
    }

    /// Panic inside `call`.
    #[must_use]
    pub const fn panic_in_call() -> Step {
        Step {
            action: Action::PanicInCall,
            latency: Duration::ZERO,
        }
    }

    /// The same step, taken after `latency`.
    #[must_use]
    pub const fn after(self, latency: Duration) -> Step {
        Step {
            action: self.action,
            latency,
        }
    }
}

impl Default for Step {
    fn default() -> Self {
        Step::ok()
    }
}

/// What a [`Script::from_fn`] closure knows about the call it decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallContext {
    /// 0 for the first call the backend received, 1 for the second, …
    pub index: u64,
    /// Calls in flight including this one.
    pub in_flight: u64,
    /// Time since the backend was created (tokio time).
    pub elapsed: Duration,
}

/// A seeded random behaviour: each call draws its step independently.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomProfile {
    /// Probability in `0.0..=1.0` that a call fails.
    pub failure_rate: f64,
    /// Probability that a call hangs until cancelled.
    pub hang_rate: f64,
    /// Probability that a call panics when polled.
    pub panic_rate: f64,
    /// Latency of an ordinary call is drawn uniformly from this range (inclusive).
    pub latency: (Duration, Duration),
    /// Probability that a call is slow instead.
    pub slow_rate: f64,
    /// Latency of a slow call.
    pub slow_latency: Duration,
}

impl Default for RandomProfile {
    /// Every call succeeds at once.
    fn default() -> Self {
        RandomProfile {
            failure_rate: 0.0,
            hang_rate: 0.0,
            panic_rate: 0.0,
            latency: (Duration::ZERO, Duration::ZERO),
            slow_rate: 0.0,
            slow_latency: Duration::ZERO,
        }
    }
}

type StepFn = dyn Fn(&CallContext) -> Step + Send + Sync;

/// The behaviour of a [`MockBackend`](super::MockBackend), call by call.
#[derive(Clone)]
pub struct Script {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Always(Step),
    Sequence {
        steps: Arc<Mutex<VecDeque<Step>>>,
        then: Box<Script>,
    },
    Random {
        profile: RandomProfile,
        rng: Arc<Mutex<StdRng>>,
    },
    Fn(Arc<StepFn>),
}

impl Script {
    /// Every call takes `step`.
    #[must_use]
    pub fn always(step: Step) -> Script {
        Script {
            kind: Kind::Always(step),
        }
    }

    /// The calls take `steps` in order; afterwards every call succeeds at once (change that
    /// with [`Script::then`]).
    #[must_use]
    pub fn sequence(steps: impl IntoIterator<Item = Step>) -> Script {
        Script {
            kind: Kind::Sequence {
                steps: Arc::new(Mutex::new(steps.into_iter().collect())),
                then: Box::new(Script::always(Step::ok())),
            },
        }
    }

    /// After this script's sequence runs out, follow `next`. On a script that is not a
    /// sequence this returns `self` unchanged.
    #[must_use]
    pub fn then(self, next: Script) -> Script {
        match self.kind {
            Kind::Sequence { steps, .. } => Script {
                kind: Kind::Sequence {
                    steps,
                    then: Box::new(next),
                },
            },
            kind => Script { kind },
        }
    }

    /// Each call draws its step from `profile` with a generator seeded by `seed`: the same seed
    /// and the same order of calls give the same behaviour.
    #[must_use]
    pub fn random(seed: u64, profile: RandomProfile) -> Script {
        Script {
            kind: Kind::Random {
                profile,
                rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
            },
        }
    }

    /// Each call's step is what `decide` returns for it: latency that grows with
    /// concurrency, failures at chosen indexes, anything.
    #[must_use]
    pub fn from_fn(decide: impl Fn(&CallContext) -> Step + Send + Sync + 'static) -> Script {
        Script {
            kind: Kind::Fn(Arc::new(decide)),
        }
    }

    pub(super) fn next_step(&self, ctx: &CallContext) -> Step {
        match &self.kind {
            Kind::Always(step) => *step,
            Kind::Sequence { steps, then } => {
                let next = steps.lock().pop_front();
                match next {
                    Some(step) => step,
                    None => then.next_step(ctx),
                }
            }
            Kind::Random { profile, rng } => draw(profile, &mut rng.lock()),
            Kind::Fn(decide) => decide(ctx),
        }
    }
}

fn draw(profile: &RandomProfile, rng: &mut StdRng) -> Step {
    let roll: f64 = rng.random();
    let action = if roll < profile.hang_rate {
        Action::Hang
    } else if roll < profile.hang_rate + profile.panic_rate {
        Action::Panic
    } else if roll < profile.hang_rate + profile.panic_rate + profile.failure_rate {
        Action::Fail
    } else {
        Action::Succeed
    };
    let slow: f64 = rng.random();
    let latency = if slow < profile.slow_rate {
        profile.slow_latency
    } else {
        let (lo, hi) = profile.latency;
        if hi > lo {
            let nanos = rng.random_range(lo.as_nanos()..=hi.as_nanos());
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        } else {
            lo
        }
    };
    Step { action, latency }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Always(step) => f.debug_tuple("Always").field(step).finish(),
            Kind::Sequence { steps, then } => f
                .debug_struct("Sequence")
                .field("remaining", &steps.lock().len())
                .field("then", then)
                .finish(),
            Kind::Random { profile, .. } => f.debug_tuple("Random").field(profile).finish(),
            Kind::Fn(_) => f.write_str("FromFn"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(index: u64) -> CallContext {
        CallContext {
            index,
            in_flight: 1,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn sequence_then_fallback() {
        let script = Script::sequence([Step::fail(), Step::hang()])
            .then(Script::always(Step::ok().after(Duration::from_millis(3))));
        assert_eq!(script.next_step(&ctx(0)), Step::fail());
        assert_eq!(script.next_step(&ctx(1)), Step::hang());
        assert_eq!(
            script.next_step(&ctx(2)),
            Step::ok().after(Duration::from_millis(3))
        );
        assert_eq!(
            script.next_step(&ctx(3)),
            Step::ok().after(Duration::from_millis(3))
        );
    }

    #[test]
    fn random_is_reproducible_for_a_seed_and_respects_rates() {
        let profile = RandomProfile {
            failure_rate: 0.3,
            latency: (Duration::from_millis(1), Duration::from_millis(5)),
            slow_rate: 0.1,
            slow_latency: Duration::from_secs(1),
            ..RandomProfile::default()
        };
        let a = Script::random(42, profile);
        let b = Script::random(42, profile);
        let steps_a: Vec<Step> = (0..1000).map(|i| a.next_step(&ctx(i))).collect();
        let steps_b: Vec<Step> = (0..1000).map(|i| b.next_step(&ctx(i))).collect();
        assert_eq!(steps_a, steps_b);
        let failures = steps_a.iter().filter(|s| s.action == Action::Fail).count();
        assert!((240..=360).contains(&failures), "failures = {failures}");
        for s in &steps_a {
            assert!(
                s.latency == Duration::from_secs(1)
                    || (Duration::from_millis(1)..=Duration::from_millis(5)).contains(&s.latency),
                "latency out of range: {:?}",
                s.latency
            );
        }
    }

    #[test]
    fn from_fn_sees_the_context() {
        let script = Script::from_fn(|c| {
            if c.in_flight > 2 {
                Step::fail()
            } else {
                Step::ok().after(Duration::from_millis(c.index))
            }
        });
        assert_eq!(
            script.next_step(&ctx(7)),
            Step::ok().after(Duration::from_millis(7))
        );
        let busy = CallContext {
            in_flight: 3,
            ..ctx(0)
        };
        assert_eq!(script.next_step(&busy), Step::fail());
    }
}
