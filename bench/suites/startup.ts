/**
 * `startup`: the fixed cost of one transfer over ssh, where a user feels it most —
 * `ferry file host:dir/` of one 4 KiB file against `ssh host true` (the floor every
 * ssh-started tool pays: connect, key exchange, authentication, a remote process),
 * `rsync -a` and `scp` of the same file, and ferry's pull and `--via-ssh`. Issue
 * #13 asks for ferry within 0.3 s of `ssh host true`.
 *
 * Warm cache on purpose (a start-up cost is paid again on every run, whatever the
 * page cache holds) and interleaved: run i of every command, then run i+1. Wall
 * seconds (median, min) and machine-wide CPU seconds (median), and the difference
 * to `ssh host true`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { markdownTable, median, min, textTable } from '../stats.js';
import type { StandaloneSuite } from '../suite.js';
import { FERRY_BIN, machineCpuSeconds, ToolUnavailable, which } from '../tools.js';
import { endpointOf, suiteSshd } from './network.js';

interface Command {
  name: string;
  argv: (dir: string) => string[];
}

function timed(argv: string[]): { s: number; cpu: number } {
  const c0 = machineCpuSeconds() ?? 0;
  const t0 = performance.now();
  const r = spawnSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const s = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${argv.slice(0, 3).join(' ')}…: ${r.stderr.trim().split('\n')[0] ?? `exit ${r.status}`}`);
  return { s, cpu: (machineCpuSeconds() ?? 0) - c0 };
}

export function makeStartupSuite(runs: number): StandaloneSuite {
  return {
    name: 'startup',
    group: 'startup',
    title: 'fixed cost over ssh: one 4 KiB file, warm cache, against `ssh host true`',
    async runStandalone(ctx) {
      for (const c of ['ssh', 'rsync', 'scp']) if (!which(c)) throw new ToolUnavailable(`${c} is not installed`);
      const e = endpointOf(await suiteSshd(ctx));
      const work = mkdtempSync(join(ctx.workDir, 'startup-'));
      ctx.onCleanup(() => rmSync(work, { recursive: true, force: true }));
      const file = join(work, 'one.bin');
      writeFileSync(file, Buffer.alloc(4096, 7));
      const ferry = [FERRY_BIN, '--progress=never', '-e', e.rsh, '--remote-ferry', FERRY_BIN];
      const commands: Command[] = [
        { name: 'ssh host true', argv: () => ['ssh', ...e.sshArgs, e.host, 'true'] },
        { name: 'ferry push (ssh)', argv: (d) => [...ferry, file, `${e.host}:${d}/`] },
        { name: 'ferry pull (ssh)', argv: (d) => [...ferry, `${e.host}:${file}`, `${d}/`] },
        { name: 'ferry push --via-ssh', argv: (d) => [...ferry, '--via-ssh', file, `${e.host}:${d}/`] },
        { name: 'rsync -a (ssh)', argv: (d) => ['rsync', '-a', '-e', e.rsh, file, `${e.host}:${d}/`] },
        { name: 'scp', argv: (d) => ['scp', ...e.scpArgs, file, `${e.host}:${d}/`] },
      ];
      const n = ctx.quick ? Math.max(3, Math.min(runs, 5)) : Math.max(runs, 7);
      const secs = new Map<string, number[]>(commands.map((c) => [c.name, []]));
      const cpus = new Map<string, number[]>(commands.map((c) => [c.name, []]));
      for (let i = 0; i < n; i++) {
        for (const c of commands) {
          const dir = mkdtempSync(join(work, 'dst-'));
          const t = timed(c.argv(dir));
          secs.get(c.name)!.push(t.s);
          cpus.get(c.name)!.push(t.cpu);
          rmSync(dir, { recursive: true, force: true });
        }
      }
      const floor = median(secs.get('ssh host true')!);
      const rows: string[][] = [['command', 'median s', 'min s', 'over `ssh host true`', 'CPU s']];
      const json: Record<string, { medianS: number; minS: number; overSshS: number; cpuS: number }> = {};
      for (const c of commands) {
        const m = median(secs.get(c.name)!);
        const over = m - floor;
        json[c.name] = { medianS: m, minS: min(secs.get(c.name)!), overSshS: over, cpuS: median(cpus.get(c.name)!) };
        rows.push([c.name, m.toFixed(3), min(secs.get(c.name)!).toFixed(3), c.name === 'ssh host true' ? '' : `${over < 0 ? '−' : '+'}${Math.abs(over).toFixed(3)} s`, median(cpus.get(c.name)!).toFixed(2)]);
      }
      const lines = [textTable(rows), `   ${n} interleaved runs each; target (#13): ferry within +0.300 s of \`ssh host true\``];
      return { lines, markdown: markdownTable(rows), json };
    },
  };
}
