//! The one way this crate takes a std mutex: a panic while it was held (which would poison it) does not make every
//! later caller panic too; the data is taken as it is.

use std::sync::{Mutex, MutexGuard};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
