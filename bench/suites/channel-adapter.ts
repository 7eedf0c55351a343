/**
 * `channel`, until bench/suites/channel.ts exists: wraps the secure-channel
 * engineer's stand-alone bench/channel.ts (`runChannelBench`, `runHandshakeBench`)
 * as a StandaloneSuite, so `npm run bench -- --suite channel` runs it and its
 * figures land in the same JSON and Markdown. Loaded by a dynamic import, so
 * this file compiles (and the harness runs) whether or not bench/channel.ts
 * exists or changes shape; when it is missing or does not export what is
 * expected, `loadChannelAdapter` returns undefined.
 */
import { existsSync } from 'node:fs';
import type { StandaloneSuite } from '../suite.js';
import { markdownTable, textTable } from '../stats.js';

interface Row {
  mode: string;
  records?: string;
  processes: number;
  bytes: number;
  runs: number;
  mbPerS: number;
  cpuSecondsPerGB: number;
  handshakeMs: number;
}

interface ChannelModule {
  runChannelBench(opts: { bytes: number; runs: number; processes?: 1 | 2 }): Promise<Row[]>;
  runHandshakeBench?(count: number): Promise<{ msPerHandshake: number; cpuMsPerHandshake: number }>;
}

export async function loadChannelAdapter(runs: number): Promise<StandaloneSuite | undefined> {
  const url = new URL('../channel.js', import.meta.url);
  if (!existsSync(url)) return undefined;
  const mod = (await import(url.href)) as Partial<ChannelModule>;
  if (typeof mod.runChannelBench !== 'function') return undefined;
  const run = mod.runChannelBench;
  const handshakes = mod.runHandshakeBench;
  return {
    name: 'channel',
    group: 'channel',
    title: 'secure channel throughput over loopback TCP (bench/channel.ts), sender and receiver in two processes',
    async runStandalone(ctx) {
      const bytes = ctx.quick ? 256 * 1024 * 1024 : 1024 * 1024 * 1024;
      const rows = await run({ bytes, runs, processes: 2 });
      const table: string[][] = [['mode', 'MB/s', 'CPU s/GB (both ends)', 'handshake ms']];
      for (const r of rows) table.push([r.records ? `${r.mode} (records: ${r.records})` : r.mode, String(r.mbPerS), String(r.cpuSecondsPerGB), String(r.handshakeMs)]);
      const hs = handshakes ? await handshakes(ctx.quick ? 20 : 50) : undefined;
      const hsLine = hs ? `handshake, both ends in one process: ${hs.msPerHandshake} ms wall, ${hs.cpuMsPerHandshake} ms CPU` : '';
      const head = `${(bytes / 2 ** 20).toFixed(0)} MiB payload, median of ${runs} runs`;
      return {
        lines: [head, '', textTable(table), ...(hsLine ? [hsLine] : [])],
        markdown: `${head}\n\n${markdownTable(table)}${hsLine ? `\n\n${hsLine}` : ''}`,
        json: { rows, handshake: hs ?? null },
      };
    },
  };
}
