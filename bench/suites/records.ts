/**
 * `records`: the record-layer micro-benchmark (bench/records.ts) as a suite of
 * `npm run bench`, so its figures come from the same script as every other: it runs
 * `node dist/bench/records.js` in a child process (CPU seconds per GiB sealed and
 * opened, native and node:crypto) and hands its table back.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { StandaloneSuite } from '../suite.js';

export function makeRecordsSuite(runs: number): StandaloneSuite {
  return {
    name: 'records',
    group: 'records',
    title: 'record layer: CPU seconds per GiB sealed and opened (native and node:crypto), one core',
    async runStandalone(ctx) {
      const script = fileURLToPath(new URL('../records.js', import.meta.url));
      const r = spawnSync(process.execPath, [script, '--gib', ctx.quick ? '0.25' : '1', '--runs', String(runs)], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`bench/records.js failed: ${(r.stderr || r.stdout).trim().split('\n').pop() ?? r.status}`);
      const lines = r.stdout.trimEnd().split('\n');
      return { lines, markdown: ['```', ...lines, '```'].join('\n'), json: { output: lines } };
    },
  };
}
