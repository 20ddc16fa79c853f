//! The browser's threads: Web Workers sharing the module's memory, started by
//! `wasm-bindgen-rayon` as rayon's global pool, all but one each running one loop that waits
//! for work and takes ranges of it, beside the thread that asks.
//!
//! Not rayon's own `for_each`: its idle threads go to sleep after a few rounds, and each of the
//! ~200 matrix products of a decoded token then waited for them to wake (SmolLM2 in headless
//! Chromium, 2 threads: prompts 1.76× faster, decode 1.01×). Here an idle worker spins for a
//! while before it sleeps, as candle's barrier pool does natively, so that products coming one
//! after another find it awake, and sleeps (`std::thread::park`, a `memory.atomic.wait32`)
//! once the answer is done.

use std::cell::{Cell, UnsafeCell};
use std::hint::spin_loop;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::Thread;

/// Checks of the work counter before an idle worker sleeps: a few milliseconds, longer than
/// the single-threaded steps between two products of a token.
const SPINS_BEFORE_SLEEP: u32 = 1 << 21;

type Task<'a> = &'a (dyn Fn(Range<usize>) + Sync);

struct Pool {
    workers: usize,
    /// Bumped for each piece of work; idle workers watch it.
    generation: AtomicU32,
    /// Workers asleep, to be woken; and every worker, to wake them.
    sleeping: AtomicUsize,
    handles: Mutex<Vec<Thread>>,
    /// Workers still on the current piece of work.
    busy: AtomicUsize,
    /// The next item not yet taken, the work's size, and the smallest range handed out.
    cursor: AtomicUsize,
    items: AtomicUsize,
    smallest: AtomicUsize,
    /// The current work; set before `generation` moves, cleared once `busy` is zero.
    task: UnsafeCell<Option<Task<'static>>>,
    /// One asking thread at a time.
    asking: Mutex<()>,
}

// SAFETY: `task` is written only by the thread holding `asking` while no worker reads it (all
// idle: `busy` is zero), and read by workers only between the release of `generation` that
// follows the write and their own decrement of `busy`.
unsafe impl Sync for Pool {}

thread_local! {
    static IN_POOL: Cell<bool> = const { Cell::new(false) };
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            // One of rayon's threads stays rayon's: candle's own operations run parallel
            // iterators on it, which would wait forever on threads that never return.
            workers: rayon::current_num_threads().saturating_sub(1),
            generation: AtomicU32::new(0),
            sleeping: AtomicUsize::new(0),
            handles: Mutex::new(Vec::new()),
            busy: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
            items: AtomicUsize::new(0),
            smallest: AtomicUsize::new(1),
            task: UnsafeCell::new(None),
            asking: Mutex::new(()),
        }));
        // Each spawned loop never returns, so each holds one of rayon's threads.
        for _ in 0..pool.workers {
            rayon::spawn(move || work(pool));
        }
        pool
    })
}

/// The asking thread and the workers.
pub fn threads() -> usize {
    pool().workers + 1
}

pub fn for_each_range(items: usize, task: impl Fn(Range<usize>) + Sync) {
    if items == 0 {
        return;
    }
    let pool = pool();
    if pool.workers == 0 || IN_POOL.get() {
        task(0..items);
        return;
    }
    let _asking = pool.asking.lock().unwrap_or_else(PoisonError::into_inner);
    pool.items.store(items, Ordering::Relaxed);
    pool.smallest.store(
        items.div_ceil((pool.workers + 1) * 16).max(1),
        Ordering::Relaxed,
    );
    pool.cursor.store(0, Ordering::Relaxed);
    pool.busy.store(pool.workers, Ordering::Relaxed);
    let task: Task<'_> = &task;
    // SAFETY: the lifetime is erased only for the workers, which use the task until `busy`
    // is zero; this function waits for that before `task` goes out of scope. No worker reads
    // `pool.task` now (the previous work's `busy` reached zero).
    unsafe { *pool.task.get() = Some(std::mem::transmute::<Task<'_>, Task<'static>>(task)) };
    pool.generation.fetch_add(1, Ordering::SeqCst);
    if pool.sleeping.load(Ordering::SeqCst) > 0 {
        for worker in pool
            .handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            worker.unpark();
        }
    }
    take_ranges(pool, task);
    while pool.busy.load(Ordering::Acquire) != 0 {
        spin_loop();
    }
    // SAFETY: every worker is done with it (`busy` is zero).
    unsafe { *pool.task.get() = None };
}

/// Takes ranges until none is left: a share of what remains, so that the first are large and
/// the last small — the thread that finishes first then waits for at most a small range of the
/// other's (ranges of a fixed eighth of a thread's share left it waiting 0.8–1.7 ms a token for a
/// preempted other, SmolLM2 in headless Chromium on this 2-core machine; 0.5–1.0 ms with these).
fn take_ranges(pool: &Pool, task: Task<'_>) {
    let (items, smallest) = (
        pool.items.load(Ordering::Relaxed),
        pool.smallest.load(Ordering::Relaxed),
    );
    let threads = pool.workers + 1;
    let mut start = pool.cursor.load(Ordering::Relaxed);
    while start < items {
        let size = ((items - start) / (2 * threads)).max(smallest);
        match pool.cursor.compare_exchange_weak(
            start,
            start + size,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                task(start..items.min(start + size));
                start = pool.cursor.load(Ordering::Relaxed);
            }
            Err(now) => start = now,
        }
    }
}

fn work(pool: &'static Pool) {
    IN_POOL.set(true);
    pool.handles
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(std::thread::current());
    // From the start, not from what it reads now: the first work may have been published
    // (and be waiting for this worker) before the worker began.
    let mut seen = 0;
    loop {
        seen = next_generation(pool, seen);
        // SAFETY: set before the generation moved and kept until this worker lowers `busy`.
        let task = unsafe { *pool.task.get() }.expect("work comes with its task");
        take_ranges(pool, task);
        pool.busy.fetch_sub(1, Ordering::Release);
    }
}

/// Waits for work after generation `seen`: spinning a while, then asleep.
fn next_generation(pool: &Pool, seen: u32) -> u32 {
    for _ in 0..SPINS_BEFORE_SLEEP {
        let now = pool.generation.load(Ordering::Acquire);
        if now != seen {
            return now;
        }
        spin_loop();
    }
    loop {
        // Counted asleep before the last look, so that the asking thread, which moves the
        // generation before it counts the sleepers, either sees this one or is seen by it.
        pool.sleeping.fetch_add(1, Ordering::SeqCst);
        if pool.generation.load(Ordering::SeqCst) == seen {
            // Returns at once if unparked since it last slept, so no wake-up is lost.
            std::thread::park();
        }
        pool.sleeping.fetch_sub(1, Ordering::SeqCst);
        let now = pool.generation.load(Ordering::Acquire);
        if now != seen {
            return now;
        }
    }
}
