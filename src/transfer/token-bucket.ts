/**
 * `--bwlimit=RATE`: a token bucket that paces the sender's data, shared by all its
 * streams. Pure arithmetic: the caller passes the time and sleeps for the delay it
 * gets back (modes/send.ts wraps the channels with it only when a limit is set, so an
 * unlimited transfer never runs this code).
 *
 * The bucket holds at most `burst` bytes of credit and fills at `rate` bytes per
 * second. Taking n bytes always succeeds and may leave the bucket in debt; the answer
 * is how long to wait until the debt is paid, so that after any run of takes the
 * bytes released by time t are at most burst + rate × t. Frames larger than the burst
 * (a 1 MiB chunk) are therefore paced correctly too, one wait per frame, which is how
 * rsync's --bwlimit paces its writes.
 */
export class TokenBucket {
  readonly rate: number;
  readonly burst: number;
  #tokens: number;
  #last: number;

  /** `rate` in bytes per second; `now` in milliseconds (any monotonic clock). */
  constructor(rate: number, now: number, burst = Math.min(rate, 64 * 1024)) {
    if (!(rate > 0)) throw new RangeError('rate must be positive');
    this.rate = rate;
    this.burst = burst;
    this.#tokens = burst;
    this.#last = now;
  }

  /** Take `n` bytes at time `now` (ms); returns the milliseconds to wait before sending them. */
  take(n: number, now: number): number {
    if (now > this.#last) {
      this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) * this.rate) / 1000);
      this.#last = now;
    }
    this.#tokens -= n;
    return this.#tokens >= 0 ? 0 : (-this.#tokens * 1000) / this.rate;
  }
}

/**
 * rsync's RATE syntax: a number of KiB per second by default; a suffix K, M or G
 * (optionally with iB/B) gives the unit, B bytes; decimals allowed ("1.5M"). 0 means
 * no limit (rsync's meaning). Returns bytes per second, or null when unparsable.
 */
export function parseRate(s: string): number | null {
  const m = /^(\d+(?:\.\d+)?)([bBkKmMgG])?(?:i?[bB])?$/.exec(s.trim());
  if (!m) return null;
  const unit = (m[2] ?? 'k').toLowerCase();
  const mult = unit === 'b' ? 1 : 1024 ** ('kmg'.indexOf(unit) + 1);
  const n = Math.floor(Number(m[1]) * mult);
  return Number.isSafeInteger(n) ? n : null;
}
