//! Names that scenario files use for enums (fault kinds, actions, delivery
//! modes, checker kinds). An unknown name is refused with the list of known ones.

use super::error::did_you_mean;
use super::{Action, Delivery, FaultKind};
use crate::check::CheckerKind;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// An enum whose values are written by name in scenario files.
pub(super) trait Keyword: Copy + 'static {
    /// What a value is called in messages: "fault kind".
    const WHAT: &'static str;
    fn all() -> &'static [Self];
    fn keyword(self) -> &'static str;
}

impl Keyword for FaultKind {
    const WHAT: &'static str = "fault kind";
    fn all() -> &'static [FaultKind] {
        &FaultKind::ALL
    }
    fn keyword(self) -> &'static str {
        self.name()
    }
}

impl Keyword for Action {
    const WHAT: &'static str = "action";
    fn all() -> &'static [Action] {
        &Action::ALL
    }
    fn keyword(self) -> &'static str {
        self.name()
    }
}

impl Keyword for Delivery {
    const WHAT: &'static str = "delivery";
    fn all() -> &'static [Delivery] {
        &Delivery::ALL
    }
    fn keyword(self) -> &'static str {
        self.name()
    }
}

impl Keyword for CheckerKind {
    const WHAT: &'static str = "checker";
    fn all() -> &'static [CheckerKind] {
        &CheckerKind::ALL
    }
    fn keyword(self) -> &'static str {
        self.name()
    }
}

/// The names of every value, for messages.
pub(super) fn known_names<T: Keyword>() -> String {
    T::all().iter().map(|value| value.keyword()).collect::<Vec<_>>().join(", ")
}

/// A keyword as read from the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Word<T>(pub T);

impl<'de, T: Keyword> Deserialize<'de> for Word<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Word<T>, D::Error> {
        deserializer.deserialize_str(WordVisitor(PhantomData))
    }
}

struct WordVisitor<T>(PhantomData<T>);

impl<T: Keyword> Visitor<'_> for WordVisitor<T> {
    type Value = Word<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} name, one of: {}", T::WHAT, known_names::<T>())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Word<T>, E> {
        if let Some(value) = T::all().iter().find(|value| value.keyword() == text) {
            return Ok(Word(*value));
        }
        let names: Vec<&str> = T::all().iter().map(|value| value.keyword()).collect();
        Err(E::custom(format!("unknown {} {text:?}{}; expected one of: {}", T::WHAT, did_you_mean(text, &names), names.join(", "))))
    }
}
