//! The allocator: mimalloc in place of glibc's. In the intake bench's
//! shape (single alerts answered from the journal, synced within 10 ms),
//! glibc's `malloc` and its consolidation of freed chunks took nearly half
//! the journal applier's CPU; with mimalloc set as below, the same server
//! took about 9 % more alerts a second at concurrency 8 (medians of ten
//! runs, interleaved with glibc's).
//!
//! Two settings keep its memory near glibc's with its trim. mimalloc
//! 3 gives freed memory back a second after it is freed: a server that had
//! taken ten 10,000-alert requests and then 100,000 single alerts held
//! 128 MiB, against 87 MiB with glibc; with no delay, 89 MiB. And the
//! kernel's transparent huge pages, which mimalloc asks for, back each
//! thread's first pages with 2 MiB ones: 67 MiB at rest against 44 MiB.
//! With both set: 47 MiB at rest, 78 MiB after that load. (Answering
//! after the commit, the intake bench found it 10–24 MiB above glibc
//! after its ten large requests: 102–104 MiB, under the 150 MB goal.)

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (2.x and 3.x alike), which the
/// bindings do not name: the option before `mi_option_use_numa_nodes`.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Has freed memory given back at once, and no huge pages used. Call it
/// first thing in `main`, before other threads start.
pub fn configure() {
    // SAFETY: sets one option of the allocator's; no memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
    // SAFETY: a flag of this process's, taking no pointer; the kernel wants
    // the unused arguments as zeroed longs. On kernels without it the call
    // fails and nothing changes but the memory figures.
    #[cfg(target_os = "linux")]
    unsafe {
        let zero: libc::c_ulong = 0;
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            1 as libc::c_ulong,
            zero,
            zero,
            zero,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_the_option_mimalloc_numbers_so() {
        assert_eq!(libmimalloc_sys::mi_option_use_numa_nodes - 1, PURGE_DELAY);
        let major = unsafe { libmimalloc_sys::mi_version() } / 10_000;
        assert!((2..=3).contains(&major), "mimalloc {major}.x");
        // Its default (1 s in 3.x, 10 ms in 2.x) is no neighbour's.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            let default = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
            assert!([1_000, 10].contains(&default), "{default}");
        }
        configure();
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, 0);
        #[cfg(target_os = "linux")]
        {
            let zero: libc::c_ulong = 0;
            let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, zero, zero, zero, zero) };
            assert_eq!(disabled, 1);
        }
    }
}
