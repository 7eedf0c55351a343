/**
 * `--stats`: rsync's summary block, on stdout after the run, with rsync's labels so
 * that what people grep for in rsync's output ("Number of regular files
 * transferred", "Total transferred file size", "speedup is") is found in ferry's.
 *
 *   Number of files: 12 (reg: 9, dir: 2, link: 1)
 *   Number of deleted files: 0
 *   Number of regular files transferred: 3
 *   Total file size: 1,234 bytes
 *   Total transferred file size: 456 bytes
 *   Total bytes sent: 512                      (network: file payload bytes)
 *
 *   sent 512 bytes  received 0 bytes  1,024.00 bytes/sec
 *   total size is 1,234  speedup is 2.41
 *
 * Differences from rsync (README "rsync options"): no "Literal/Matched data" (ferry
 * sends whole files, no delta), and over the network "sent" counts file payload
 * bytes only, not protocol overhead; a local copy reports the bytes it copied as sent.
 */
import { printOut } from './output.js';

export interface StatsInput {
  files: number;
  regular: number;
  dirs: number;
  links: number;
  deleted: number;
  transferred: number;
  totalSize: number;
  transferredSize: number;
  sent: number;
  received: number;
  seconds: number;
}

const n = (x: number): string => x.toLocaleString('en-US');

export function renderStats(s: StatsInput): string {
  const rate = s.seconds > 0 ? (s.sent + s.received) / s.seconds : 0;
  const moved = s.sent + s.received;
  const speedup = moved > 0 ? s.totalSize / moved : s.totalSize > 0 ? Infinity : 0;
  return [
    `Number of files: ${n(s.files)} (reg: ${n(s.regular)}, dir: ${n(s.dirs)}, link: ${n(s.links)})`,
    `Number of deleted files: ${n(s.deleted)}`,
    `Number of regular files transferred: ${n(s.transferred)}`,
    `Total file size: ${n(s.totalSize)} bytes`,
    `Total transferred file size: ${n(s.transferredSize)} bytes`,
    `Total bytes sent: ${n(s.sent)}`,
    `Total bytes received: ${n(s.received)}`,
    '',
    `sent ${n(s.sent)} bytes  received ${n(s.received)} bytes  ${rate.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })} bytes/sec`,
    `total size is ${n(s.totalSize)}  speedup is ${Number.isFinite(speedup) ? speedup.toFixed(2) : 'inf'}`,
    '',
  ].join('\n');
}

export function printStats(s: StatsInput): void {
  printOut(renderStats(s));
}
