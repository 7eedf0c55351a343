/**
 * The final summary line, printed to stderr after every run (even with
 * `--progress=never` and `--json`). Generic: any mode's counters with these fields.
 *
 *   copied 1200 (35.2 MiB), skipped 40, deleted 0, failed 2 in 1.52 s (23.1 MiB/s)
 *
 * "failed N" is red on a colour terminal unless NO_COLOR is set (cli/output useColor).
 */
import { nativeStatus } from '../native/index.js';
import { formatBytes, formatRate } from './progress.js';

/**
 * Which data-plane paths this process uses, for the JSON summary and `-v`:
 * records: 'native' (native/records.c, Node's OpenSSL) or 'js' (node:crypto);
 * ktls: 'native' when the addon's setsockopt calls are loaded ('js': userspace TLS
 * only; whether a channel offloaded is its `tx`/`rx`); copy: local file copies
 * (native/fs-batch.c) or the TypeScript path; files: the network transfer's small-file
 * reads and writes and the content hash (native/net-batch.c) or their TypeScript paths;
 * walk: directory listings (native/fs-walk.c) or readdir + lstat.
 */
export function nativePaths(): { records: 'native' | 'js'; ktls: 'native' | 'js'; copy: 'native' | 'js'; files: 'native' | 'js'; walk: 'native' | 'js' } {
  const s = nativeStatus();
  return { records: s.records, ktls: s.ktls, copy: s.copy, files: s.files, walk: s.walk };
}

export interface SummaryCounters {
  copied: number;
  skipped: number;
  failed: number;
  bytesCopied: number;
  deleted?: number;
  warnings?: number;
}

export function renderSummaryLine(c: SummaryCounters, seconds: number, opts: { color?: boolean; verb?: string } = {}): string {
  const rate = seconds > 0 ? c.bytesCopied / seconds : 0;
  const failed = `failed ${c.failed}`;
  const failedShown = opts.color && c.failed > 0 ? `\x1b[31m${failed}\x1b[0m` : failed;
  const parts = [`${opts.verb ?? 'copied'} ${c.copied} (${formatBytes(c.bytesCopied)})`, `skipped ${c.skipped}`];
  if (c.deleted !== undefined) parts.push(`deleted ${c.deleted}`);
  if (c.warnings) parts.push(`warnings ${c.warnings}`);
  parts.push(failedShown);
  return `${parts.join(', ')} in ${seconds.toFixed(2)} s (${formatRate(rate)})`;
}
