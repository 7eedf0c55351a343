/**
 * Two small concurrency helpers for the transfer state machines.
 *
 * `WorkQueue` is the one queue files are handed out from to the `-P N` stream
 * workers: unbounded (it holds small descriptors, never file contents; its length is
 * bounded by the manifest), `take()` waits for work and returns undefined once the
 * queue is closed and drained.
 *
 * `Budget` bounds what is in flight (bytes buffered for the disk, files open, copies
 * started): the receiver awaits `acquire(n)` before queueing a write and so stops
 * reading frames — which is what pushes back on the sender through the channel — when
 * the disk is slower than the network; with units of 1 it is the semaphore local copy
 * bounds its tasks with (modes/copy.ts). Waiters are served in order.
 */
export class WorkQueue<T> {
  #items: T[] = [];
  #head = 0;
  #closed = false;
  #waiters: ((v: T | undefined) => void)[] = [];

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    if (this.#closed) throw new Error('WorkQueue: push after close');
    const w = this.#waiters.shift();
    if (w) w(item);
    else this.#items.push(item);
  }

  /**
   * Put items at the front (the other ranges of a split file), so a big file is
   * finished by all streams together before new files start: this keeps the number
   * of files in progress, and so the receiver's open files, bounded.
   */
  pushFront(items: readonly T[]): void {
    if (this.#closed) throw new Error('WorkQueue: push after close');
    let i = 0;
    while (i < items.length && this.#waiters.length > 0) this.#waiters.shift()!(items[i++]!);
    const rest = items.slice(i);
    if (rest.length === 0) return;
    this.#items = [...rest, ...this.#items.slice(this.#head)];
    this.#head = 0;
  }

  close(): void {
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) w(undefined);
  }

  get closed(): boolean {
    return this.#closed;
  }

  tryTake(): T | undefined {
    if (this.#head < this.#items.length) {
      const v = this.#items[this.#head]!;
      this.#items[this.#head++] = undefined as unknown as T;
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      return v;
    }
    return undefined;
  }

  async take(): Promise<T | undefined> {
    const v = this.tryTake();
    if (v !== undefined || this.#closed) return v;
    return new Promise<T | undefined>((resolve) => this.#waiters.push(resolve));
  }
}

export class Budget {
  #used = 0;
  #waiters: { n: number; resolve: () => void }[] = [];
  constructor(readonly limit: number) {}

  get used(): number {
    return this.#used;
  }

  /** Take `n` now if it fits and nobody waits before us; false otherwise (nothing taken). */
  tryAcquire(n = 1): boolean {
    if (this.#waiters.length === 0 && (this.#used + n <= this.limit || this.#used === 0)) {
      this.#used += n;
      return true;
    }
    return false;
  }

  /** Wait until `n` fits (a request larger than the limit waits for an empty budget). */
  async acquire(n = 1): Promise<void> {
    if (this.tryAcquire(n)) return;
    await new Promise<void>((resolve) => this.#waiters.push({ n, resolve }));
  }

  release(n = 1): void {
    this.#used -= n;
    while (this.#waiters.length > 0) {
      const w = this.#waiters[0]!;
      if (this.#used + w.n > this.limit && this.#used !== 0) break;
      this.#waiters.shift();
      this.#used += w.n;
      w.resolve();
    }
  }
}
