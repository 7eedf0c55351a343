/**
 * Live progress on stderr, generic over modes: a counters object in, strings out.
 * `copy` passes its CopyCounters; `send`/`recv` pass anything with the same fields.
 *
 * - On a TTY (`--progress=auto`, the default) one line is redrawn in place at most
 *   10 times a second: files done/total, bytes done/total, rate, ETA.
 * - On a non-TTY (`auto`) a plain line is printed every 5 seconds, so logs stay
 *   readable and small.
 * - `--progress=always` redraws in place even when stderr is not a TTY (for tools
 *   that render carriage returns); `--progress=never` prints nothing live. The final
 *   summary (cli/summary.ts) is printed in every mode.
 * - When it stops, a line that was being redrawn in place is drawn one last time
 *   with the final counts and kept (like `rsync --info=progress2`); with `always`
 *   that final line is drawn even when the run was too short for a tick.
 * Rendering (`renderProgressLine`) is a pure function so tests need no timers.
 * Colour is never used here; NO_COLOR is honoured by summary.ts.
 *
 * The network modes learn their totals as the sender's walk runs: `applyProgress`
 * folds their session events (manifest growth and its end, bytes moved, files
 * confirmed) into the counters, a pure reducer tested without a network. Totals carry
 * a "+" only until the manifest is complete; a file found up to date counts as done,
 * bytes included, so the line reaches its totals, while the rate counts only the bytes
 * that moved.
 */

export interface ProgressCounters {
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
  /** false while the total is still growing (the walk is running). */
  walkDone?: boolean;
  /** performance.now() at the start. */
  startedAt: number;
  failed?: number;
  /** Bytes that actually moved, for the rate (default: bytesDone). */
  bytesMoved?: number;
}

export type ProgressMode = 'auto' | 'always' | 'never';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)} ${UNITS[u]}`;
}

export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(Math.max(0, Math.round(bytesPerSecond)))}/s`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const mm = String(m).padStart(2, '0');
  const ss = String(sec).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** One progress line (no newline, no escape codes). `now` is performance.now(). */
export function renderProgressLine(c: ProgressCounters, now: number): string {
  const elapsed = Math.max(0.001, (now - c.startedAt) / 1000);
  const rate = (c.bytesMoved ?? c.bytesDone) / elapsed;
  const more = c.walkDone === false ? '+' : '';
  const left = c.bytesTotal - c.bytesDone;
  let eta = '--:--';
  if (c.walkDone !== false && left <= 0) eta = formatDuration(0);
  else if (c.walkDone !== false && rate > 0) eta = formatDuration(left / rate);
  const failed = c.failed ? `  ${c.failed} failed` : '';
  return (
    `${c.filesDone}/${c.filesTotal}${more} files  ` +
    `${formatBytes(c.bytesDone)}/${formatBytes(c.bytesTotal)}${more}  ` +
    `${formatRate(rate)}  ETA ${eta}${failed}`
  );
}

/** What a network session reports, in the order it happens (transfer/ events). */
export type ProgressEvent =
  | { type: 'manifest'; files: number; bytes: number; complete: boolean }
  | { type: 'bytes'; n: number }
  | { type: 'file'; how: 'committed' | 'skipped'; size: number }
  | { type: 'failed' };

/** Counters of a network session, with what applyProgress needs to keep them right. */
export interface NetProgress extends ProgressCounters {
  /** Sizes of the files confirmed (committed or up to date). */
  settled: number;
  /** Sizes of the files found up to date. */
  skippedBytes: number;
}

export function newNetProgress(startedAt: number): NetProgress {
  return { filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0, walkDone: false, startedAt, failed: 0, bytesMoved: 0, settled: 0, skippedBytes: 0 };
}

/**
 * Fold one event into the counters. Bytes done are the larger of what is confirmed
 * and what moved plus what was up to date (a sparse file's holes and a resumed prefix
 * never move, so its commit settles them), never more than the total.
 */
export function applyProgress(p: NetProgress, ev: ProgressEvent): void {
  switch (ev.type) {
    case 'manifest':
      p.filesTotal = ev.files;
      p.bytesTotal = ev.bytes;
      if (ev.complete) p.walkDone = true;
      break;
    case 'bytes':
      p.bytesMoved = (p.bytesMoved ?? 0) + ev.n;
      break;
    case 'file':
      p.filesDone++;
      p.settled += ev.size;
      if (ev.how === 'skipped') p.skippedBytes += ev.size;
      break;
    case 'failed':
      p.failed = (p.failed ?? 0) + 1;
      break;
  }
  p.bytesDone = Math.min(p.bytesTotal, Math.max(p.settled, (p.bytesMoved ?? 0) + p.skippedBytes));
}

export interface ProgressReporterOptions {
  mode: ProgressMode;
  stream?: NodeJS.WriteStream;
  /** Plain-line interval on a non-TTY (default 5000 ms). */
  plainIntervalMs?: number;
}

/** Drives the live line; call stop() before printing the summary. */
export class ProgressReporter {
  readonly #c: ProgressCounters;
  readonly #stream: NodeJS.WriteStream;
  readonly #inPlace: boolean;
  readonly #enabled: boolean;
  readonly #interval: number;
  readonly #always: boolean;
  #timer: NodeJS.Timeout | null = null;
  #drawn = false;

  constructor(counters: ProgressCounters, opts: ProgressReporterOptions) {
    this.#c = counters;
    this.#stream = opts.stream ?? process.stderr;
    const tty = this.#stream.isTTY === true;
    this.#enabled = opts.mode !== 'never';
    this.#inPlace = opts.mode === 'always' || tty;
    this.#always = opts.mode === 'always';
    this.#interval = this.#inPlace ? 100 : (opts.plainIntervalMs ?? 5000);
  }

  start(): void {
    if (!this.#enabled || this.#timer) return;
    this.#timer = setInterval(() => this.#tick(), this.#interval);
    this.#timer.unref();
  }

  #tick(): void {
    const line = renderProgressLine(this.#c, performance.now());
    if (this.#inPlace) {
      this.#stream.write(`\r\x1b[2K${line}`);
      this.#drawn = true;
    } else {
      this.#stream.write(`${line}\n`);
    }
  }

  /** Erase the live line (before printing an error or the summary). */
  clear(): void {
    if (this.#drawn) {
      this.#stream.write('\r\x1b[2K');
      this.#drawn = false;
    }
  }

  /**
   * Stop redrawing. In place, the last line is drawn with the final counts and kept
   * (when a line was on screen, or always with `always`); otherwise nothing is left.
   */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    const wasRunning = this.#timer !== null;
    this.#timer = null;
    if (wasRunning && this.#inPlace && (this.#drawn || this.#always)) {
      this.#stream.write(`\r\x1b[2K${renderProgressLine(this.#c, performance.now())}\n`);
      this.#drawn = false;
      return;
    }
    this.clear();
  }
}
