//! What a request costs, in tokens.

/// The number of tokens a request takes. Closures `Fn(&Req) -> u32` are costs.
///
/// A cost above the quota's burst can never be admitted and is rejected at once with
/// [`CostExceedsBurst`](crate::CostExceedsBurst). A cost of zero takes no tokens.
pub trait Cost<Req> {
    /// The tokens `request` takes.
    fn cost(&self, request: &Req) -> u32;
}

impl<Req, F> Cost<Req> for F
where
    F: Fn(&Req) -> u32,
{
    #[inline]
    fn cost(&self, request: &Req) -> u32 {
        self(request)
    }
}

/// Every request costs one token (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnitCost;

impl<Req> Cost<Req> for UnitCost {
    #[inline]
    fn cost(&self, _request: &Req) -> u32 {
        1
    }
}
