/**
 * `npm run bench` — ferry against the tools people use today, end to end.
 *
 *   npm run bench -- [--quick] [--full] [--runs N] [--suite local,noop,network,network-noop,wan,channel,hash,limits,records,startup]
 *                    [--dataset ml_small,...] [--json FILE] [--wan-delay MS] [--wan-rate MBPS]
 *
 * How a figure is made: for each suite and dataset, every tool runs N times,
 * interleaved (run 1 of every tool, then run 2 of every tool, ...) so a slow
 * minute on this shared machine hits every tool alike. Before each run (untimed):
 * `sync`, and the page cache is dropped (root only; otherwise the results are
 * warm-cache and the table and JSON say so). A fresh-destination run writes to a
 * new path; the verified copies of a dataset are deleted together after its last
 * run, and the next dataset waits until that deletion is SETTLE_SECONDS old.
 * Why: ext4 without a journal (this machine's root filesystem: /proc/fs/jbd2 is
 * empty) will not reuse an inode freed less than 60 s ago while its inode-table
 * block is cached (fs/ext4/ialloc.c, recently_deleted), and every allocation scans
 * its group from the start past all of them. Deleting the previous run's 10,000
 * files right before the next run made file creation cost up to 2 s of system time
 * more (ferry's receiver on ml_small: 0.8 s → 2.1 s), by an amount that depended on
 * where the previous tool's inodes happened to lie: noise that favoured whichever
 * tool ran after a small deletion. No real transfer starts like that. When the disk
 * cannot hold all of a dataset's copies, each is deleted after its run, as before,
 * and the output says so. The timed part is the tool's run() plus a final `sync -f`
 * of the destination filesystem. After each run
 * (untimed) the destination is compared with the source (every path, type, size,
 * mode, symlink target, SHA-256); a mismatch is printed loudly and the run is
 * marked invalid and left out of the figures.
 *
 * Output: a table per dataset (median, min–max, MB/s, time ratio to the suite's
 * reference tools, peak RSS per side), then the same as Markdown with the command
 * that reproduces it, and everything as JSON in bench-results/<timestamp>.json.
 *
 * ── Adding a tool ──
 * A Tool (bench/tools.ts) is one object: { name, prepare?(ctx), run(src, dst, ctx),
 * cleanup?() }. run() copies the tree at `src` to the path `dst` and returns
 * { rssKb: { side: KiB } } (wrap processes with `new Rss(ctx.scratch).argv(side)`);
 * prepare() throws ToolUnavailable to skip with a reason. Add it to a suite's
 * tools(); for single commands `commandTool(name, needs, (src, dst) => argv)`.
 * ferry's network runner goes in the marked place in bench/suites/network.ts.
 *
 * ── Adding a suite ──
 * A Suite (bench/suite.ts): name, group (what --suite selects), references,
 * destination 'fresh' | 'uptodate', datasets(), tools(ctx). Register it in
 * `allSuites()` below. A StandaloneSuite (a micro-benchmark) has runStandalone()
 * instead. bench/suites/channel.ts, when it exists, is loaded by a dynamic import
 * and must export `suite` (either kind); until then the stand-alone
 * bench/channel.ts is wrapped by bench/suites/channel-adapter.ts.
 */
import { mkdir, rm, statfs, writeFile } from 'node:fs/promises';
import { existsSync, rmSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { DATASET_NAMES, defaultCacheRoot, ensureDataset, type DatasetInfo } from './datasets.js';
import { compareToSnapshot, snapshotTree, type Snapshot } from './verify.js';
import { fmtRatio, fmtSeconds, markdownTable, max, mbPerSec, median, min, textTable } from './stats.js';
import {
  REPO_ROOT,
  TimeoutError,
  ToolUnavailable,
  dropCaches,
  haveGnuTime,
  killAllProcesses,
  machineCpuSeconds,
  makeScratch,
  runProcess,
  syncFs,
  type SuiteContext,
  type Tool,
} from './tools.js';
import { isStandalone, type AnySuite, type Suite } from './suite.js';
import { localSuite } from './suites/local.js';
import { noopSuite } from './suites/noop.js';
import { networkNoopSuite, networkSuite } from './suites/network.js';
import { makeWanSuite } from './suites/wan.js';
import { hashSuite } from './suites/hash.js';
import { makeLimitsSuite } from './suites/limits.js';
import { makeRecordsSuite } from './suites/records.js';
import { makeStartupSuite } from './suites/startup.js';
import { loadChannelAdapter } from './suites/channel-adapter.js';

interface RunRecord {
  run: number;
  seconds: number | null;
  valid: boolean;
  rssKb: Record<string, number | null>;
  /** Machine-wide CPU seconds (user + system + interrupts, every core) during the timed part: both ends of a network run. */
  cpuSeconds: number | null;
  error?: string;
  /** Set when the run was killed: the true time is longer than this. */
  timedOutAfterSeconds?: number;
}

interface ToolResult {
  suite: string;
  dataset: string;
  files: number;
  bytes: number;
  tool: string;
  skipped?: string;
  runs: RunRecord[];
  medianSeconds: number | null;
  minSeconds: number | null;
  maxSeconds: number | null;
  mbPerSec: number | null;
  /** Median machine-wide CPU seconds of the valid runs. */
  medianCpuSeconds: number | null;
  /** Median time of this tool divided by the reference tool's, per reference. */
  ratios: Record<string, number | null>;
  peakRssKb: Record<string, number | null>;
}

const USAGE = `usage: npm run bench -- [--quick] [--full] [--runs N] [--suite local,noop,network,network-noop,wan,channel,hash,limits,records,startup]
                        [--dataset ${DATASET_NAMES.join(',')}] [--tools NAME,...] [--json FILE]
                        [--wan-delay MS (one way, default 20)] [--wan-rate MB/s (default 100)]
  --quick   ml_small and 2×128 MiB (wan: ml_tiny), 3 runs: ~12 min on the shared 2-core box
  --full    ml_images with the seed's 100,000 files (~10 GB)
  --tools   only tools whose name contains one of these words (a suite's references always run)
`;

function out(line = ''): void {
  process.stdout.write(`${line}\n`);
}

async function loadChannelSuite(runs: number): Promise<AnySuite | undefined> {
  const file = new URL('./suites/channel.js', import.meta.url);
  if (!existsSync(file)) {
    // No suite file yet: wrap the stand-alone bench/channel.ts when it is there.
    try {
      return await loadChannelAdapter(runs);
    } catch (e) {
      out(`!! bench/channel.js failed to load: ${(e as Error).message}`);
      return undefined;
    }
  }
  try {
    const mod = (await import(file.href)) as { suite?: AnySuite; default?: AnySuite };
    return mod.suite ?? mod.default;
  } catch (e) {
    out(`!! bench/suites/channel.js failed to load: ${(e as Error).message}`);
    return undefined;
  }
}

async function allSuites(wan: { delayMs: number; rateBytesPerSec: number }, runs: number): Promise<AnySuite[]> {
  const suites: AnySuite[] = [localSuite, noopSuite, networkSuite, networkNoopSuite, makeWanSuite(wan), hashSuite, makeLimitsSuite(runs), makeRecordsSuite(runs), makeStartupSuite(runs)];
  const channel = await loadChannelSuite(runs);
  if (channel) suites.push(channel);
  return suites;
}

function gitRev(): string | null {
  const r = spawnSync('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const dirty = spawnSync('git', ['-C', REPO_ROOT, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).stdout.trim() !== '';
  return `${r.stdout.trim()}${dirty ? '-dirty' : ''}`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      quick: { type: 'boolean', default: false },
      full: { type: 'boolean', default: false },
      runs: { type: 'string' },
      suite: { type: 'string' },
      dataset: { type: 'string' },
      tools: { type: 'string' },
      json: { type: 'string' },
      'wan-delay': { type: 'string' },
      'wan-rate': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const quick = values.quick ?? false;
  const full = values.full ?? false;
  const runs = values.runs !== undefined ? Number.parseInt(values.runs, 10) : 3;
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  if (runs < 3) out(`!! --runs ${runs}: fewer than 3 runs; medians are not meaningful (fine for a smoke test)`);
  const wan = {
    delayMs: values['wan-delay'] !== undefined ? Number(values['wan-delay']) : 20,
    rateBytesPerSec: (values['wan-rate'] !== undefined ? Number(values['wan-rate']) : 100) * 1e6,
  };
  const suites = await allSuites(wan, runs);
  const groups = values.suite?.split(',').map((s) => s.trim()).filter((s) => s !== '');
  // A word names a group (every suite in it: `network` is network and network-noop) or one suite.
  const known = new Set(suites.flatMap((s) => [s.group, s.name]));
  for (const g of groups ?? []) if (!known.has(g)) throw new Error(`unknown suite '${g}' (${[...known].join(', ')})`);
  const selected = suites.filter((s) => groups === undefined || groups.includes(s.group) || groups.includes(s.name));
  const datasetOverride = values.dataset?.split(',').map((s) => s.trim()).filter((s) => s !== '');
  // --tools: keep only tools whose name contains one of these (references are always kept).
  const toolFilter = values.tools?.split(',').map((s) => s.trim()).filter((s) => s !== '');

  const command = `npm run bench --${process.argv.slice(2).map((a) => ` ${a}`).join('')}`;
  const startedAt = new Date();
  const coldProbe = await dropCaches();
  const kernel = release();
  out(`ferry bench — ${startedAt.toISOString()} — ${cpus().length} CPUs, Linux ${kernel}, Node ${process.version}, git ${gitRev() ?? '?'}`);
  out(`command: ${command}`);
  if (!coldProbe) {
    out('!! cannot drop the page cache (needs root and a writable /proc/sys/vm/drop_caches): ALL RESULTS BELOW ARE WARM-CACHE');
  }
  if (!haveGnuTime()) out('!! /usr/bin/time not found (apt-get install time): peak RSS is not measured');

  // Per process: two bench runs at once (several engineers share this machine)
  // must not write into each other's destinations.
  const workDir = join(defaultCacheRoot(), `.work-${process.pid}`);
  await mkdir(workDir, { recursive: true });
  // Also on a crash or Ctrl-C: destinations can be gigabytes.
  process.once('exit', () => rmSync(workDir, { recursive: true, force: true }));
  const snapshots = new Map<string, Snapshot>();
  const results: ToolResult[] = [];
  const standalone: { suite: string; json: unknown }[] = [];
  const markdown: string[] = [];
  let invalid = 0;
  let coldEverywhere = coldProbe;

  // Ctrl-C / SIGTERM: tools run in their own process groups (so a timeout can kill
  // a whole pipeline), hence they do not get the terminal's signal: kill them, undo
  // the suite's helpers (sshd, proxies), and leave.
  let cleanups: (() => Promise<void> | void)[] = [];
  const onSignal = (sig: NodeJS.Signals): void => {
    out(`\n!! ${sig}: stopping`);
    killAllProcesses();
    void Promise.allSettled(cleanups.reverse().map(async (fn) => fn())).then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  for (const suite of selected) {
    cleanups = [];
    const ctx: SuiteContext = { quick, full, workDir, onCleanup: (fn) => cleanups.push(fn), log: (l) => out(l) };
    try {
      out();
      out(`══ suite ${suite.name}: ${suite.title}`);
      if (isStandalone(suite)) {
        const r = await suite.runStandalone(ctx);
        for (const l of r.lines) out(l);
        if (r.markdown) markdown.push(`#### ${suite.name}: ${suite.title}\n\n${r.markdown}`);
        standalone.push({ suite: suite.name, json: r.json });
        continue;
      }
      const tools = (await suite.tools(ctx)).filter(
        (t) => toolFilter === undefined || suite.references.includes(t.name) || toolFilter.some((f) => t.name.includes(f)),
      );
      for (const name of datasetOverride ?? suite.datasets({ quick, full })) {
        const ds = await ensureDataset(name, { full, log: (l) => out(`   ${l}`) });
        let snap = snapshots.get(ds.dir);
        if (!snap) {
          snap = await snapshotTree(ds.dir);
          snapshots.set(ds.dir, snap);
        }
        const r = await benchDataset(suite, ds, tools, snap, runs, ctx, (cold) => {
          if (!cold && coldEverywhere) out('!! could not drop the page cache before a run: results from here on are WARM-CACHE');
          coldEverywhere &&= cold;
        });
        invalid += r.invalid;
        results.push(...r.results);
        markdown.push(r.markdown);
      }
      for (const t of tools) await t.cleanup?.();
    } finally {
      for (const fn of cleanups.reverse()) await fn();
    }
  }
  await rm(workDir, { recursive: true, force: true });
  process.removeListener('SIGINT', onSignal);
  process.removeListener('SIGTERM', onSignal);

  out();
  out('── Markdown (for the README) ──');
  out();
  out(`Measured with \`${command}\` on ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? '?'}), Linux ${kernel}, Node ${process.version}, ${coldEverywhere ? 'cold' : 'WARM'} page cache, ${runs} runs each, median. "÷ X" is the median time divided by X's (below 1× = faster than X); MB/s is decimal; CPU s is machine-wide (both ends, kernel included, from /proc/stat); peak RSS per side.`);
  out();
  out(markdown.join('\n\n'));

  const json = {
    meta: {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      command,
      argv: process.argv.slice(2),
      node: process.version,
      kernel,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model.trim() ?? null,
      git: gitRev(),
      runs,
      coldCache: coldEverywhere,
      rssMeasured: haveGnuTime(),
      wan,
    },
    results,
    standalone,
  };
  const jsonPath = values.json ?? join(REPO_ROOT, 'bench-results', `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  await mkdir(join(jsonPath, '..'), { recursive: true });
  await writeFile(jsonPath, `${JSON.stringify(json, null, 2)}\n`);
  out();
  out(`results: ${jsonPath}`);
  if (invalid > 0) out(`!! ${invalid} run(s) produced a destination that differs from the source (see above)`);
  return invalid > 0 ? 1 : 0;
}


/** Seconds between deleting a dataset's copies and the next timed run (see the essay above). */
const SETTLE_SECONDS = 65;
/** When the last batch of verified copies was deleted (0: none yet). */
let lastDeletionAt = 0;

async function settleAfterDeletion(): Promise<void> {
  const wait = lastDeletionAt + SETTLE_SECONDS * 1000 - Date.now();
  if (lastDeletionAt === 0 || wait <= 0) return;
  out(`   (waiting ${(wait / 1000).toFixed(0)} s: freed inodes are not reused for 60 s on this filesystem)`);
  await new Promise((r) => setTimeout(r, wait));
}

async function prepareDestination(suite: Suite, src: string, dst: string, seeded: Set<string>): Promise<void> {
  if (suite.destination === 'fresh') {
    await rm(dst, { recursive: true, force: true, maxRetries: 3 }); // a new path per run: nothing there
  } else if (!seeded.has(dst)) {
    // Up to date: an exact copy with mtimes and modes (cp -a), made once per tool.
    await rm(dst, { recursive: true, force: true, maxRetries: 3 });
    await runProcess(['cp', '-a', src, dst], { timeoutMs: 3_600_000, label: 'seed destination' });
    seeded.add(dst);
  }
}

async function benchDataset(
  suite: Suite,
  ds: DatasetInfo,
  tools: Tool[],
  snap: Snapshot,
  runs: number,
  ctx: SuiteContext,
  noteCold: (cold: boolean) => void,
): Promise<{ results: ToolResult[]; markdown: string; invalid: number }> {
  out();
  out(`── ${suite.name} · ${ds.name}: ${ds.files.toLocaleString('en-US')} files, ${(ds.bytes / 1e6).toFixed(1)} MB`);
  const active: Tool[] = [];
  const results = new Map<string, ToolResult>();
  for (const t of tools) {
    const r: ToolResult = {
      suite: suite.name, dataset: ds.name, files: ds.files, bytes: ds.bytes, tool: t.name, runs: [],
      medianSeconds: null, minSeconds: null, maxSeconds: null, mbPerSec: null, medianCpuSeconds: null, ratios: {}, peakRssKb: {},
    };
    results.set(t.name, r);
    try {
      await t.prepare?.(ctx);
      active.push(t);
    } catch (e) {
      if (!(e instanceof ToolUnavailable)) throw e;
      r.skipped = e.message;
      out(`   ${t.name}: skipped: ${e.message}`);
    }
  }
  const seeded = new Set<string>();
  const written = new Set<string>();
  const stopped = new Set<string>();
  await settleAfterDeletion();
  // Keep every copy until the end only when the disk has room for them all (10% spare).
  const space = await statfs(ctx.workDir);
  const keepCopies = suite.destination !== 'fresh' || space.bavail * space.bsize > 1.1 * runs * active.length * ds.bytes;
  if (!keepCopies) out('   (not enough free space to keep every copy: each is deleted after its run, right before the next)');
  let invalid = 0;
  const timeoutMs = (ctx.quick ? suite.quickRunTimeoutMs : undefined) ?? suite.runTimeoutMs ?? 30 * 60_000;
  for (let run = 1; run <= runs; run++) {
    for (const t of active) {
      if (stopped.has(t.name)) continue;
      const r = results.get(t.name)!;
      const base = join(ctx.workDir, `${suite.name}-${t.name.replace(/[^A-Za-z0-9]+/g, '_')}`);
      const dst = suite.destination === 'fresh' ? `${base}-run${run}` : base;
      await prepareDestination(suite, ds.dir, dst, seeded);
      written.add(dst);
      noteCold(await dropCaches());
      const scratch = await makeScratch('ferry-bench-');
      const rec: RunRecord = { run, seconds: null, valid: false, rssKb: {}, cpuSeconds: null };
      try {
        const cpu0 = machineCpuSeconds();
        const t0 = performance.now();
        const res = await t.run(ds.dir, dst, { timeoutMs, scratch: scratch.dir });
        await syncFs(dst);
        rec.seconds = (performance.now() - t0) / 1000;
        const cpu1 = machineCpuSeconds();
        rec.cpuSeconds = cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null;
        rec.rssKb = res.rssKb;
      } catch (e) {
        rec.error = (e as Error).message;
        if (e instanceof TimeoutError) {
          // Not run again on this dataset: the figure is a lower bound.
          rec.timedOutAfterSeconds = timeoutMs / 1000;
          stopped.add(t.name);
        }
      } finally {
        await scratch.remove();
      }
      if (rec.error === undefined) {
        const cmp = await compareToSnapshot(snap, dst);
        rec.valid = cmp.ok;
        if (!cmp.ok) {
          invalid++;
          rec.error = `destination differs from source: ${cmp.differences} difference(s)`;
          out(`   !!!! ${t.name} run ${run}: RESULT DIFFERS FROM SOURCE (${cmp.differences} differences) — figure marked invalid`);
          for (const ex of cmp.examples) out(`   !!!!     ${ex}`);
        }
      }
      if (!keepCopies) {
        await rm(dst, { recursive: true, force: true, maxRetries: 3 });
        written.delete(dst);
      }
      const rss = Object.entries(rec.rssKb).map(([k, v]) => `${k} ${v === null ? '?' : `${(v / 1024).toFixed(0)} MB`}`).join(', ');
      const cpu = rec.cpuSeconds !== null ? `  cpu ${fmtSeconds(rec.cpuSeconds)} s` : '';
      out(`   run ${run} ${t.name.padEnd(16)} ${rec.seconds !== null ? `${fmtSeconds(rec.seconds)} s` : 'FAILED'}${cpu}${rss ? `  (rss ${rss})` : ''}${rec.error ? `  ${rec.error}` : ''}`);
      r.runs.push(rec);
    }
  }
  // Every copy of this dataset at once (big: 6 tools × 3 runs × 2 GiB = 38 GB of scratch).
  for (const dst of written) await rm(dst, { recursive: true, force: true, maxRetries: 3 });
  lastDeletionAt = Date.now();

  // Figures from valid runs only.
  for (const r of results.values()) {
    const secs = r.runs.filter((x) => x.valid && x.seconds !== null).map((x) => x.seconds!);
    if (secs.length > 0) {
      r.medianSeconds = median(secs);
      r.minSeconds = min(secs);
      r.maxSeconds = max(secs);
      r.mbPerSec = mbPerSec(ds.bytes, r.medianSeconds);
    }
    const cpus = r.runs.filter((x) => x.valid && x.cpuSeconds !== null).map((x) => x.cpuSeconds!);
    if (cpus.length > 0) r.medianCpuSeconds = median(cpus);
    for (const run of r.runs) {
      if (!run.valid) continue;
      for (const [side, kb] of Object.entries(run.rssKb)) {
        const prev = r.peakRssKb[side];
        r.peakRssKb[side] = kb === null ? (prev ?? null) : Math.max(prev ?? 0, kb);
      }
    }
  }
  for (const r of results.values()) {
    for (const ref of suite.references) {
      const base = results.get(ref)?.medianSeconds ?? null;
      r.ratios[ref] = base !== null && r.medianSeconds !== null ? r.medianSeconds / base : null;
    }
  }

  // CPU per unit of work: per GiB for big-file datasets, per 10k files otherwise.
  const perFiles = ds.files >= 1000;
  const cpuUnit = perFiles ? 'CPU s / 10k files' : 'CPU s / GiB';
  const cpuPer = (c: number): number => (perFiles ? (c / ds.files) * 10_000 : c / (ds.bytes / 2 ** 30));
  const header = ['tool', 'median s', 'min–max s', 'MB/s', ...suite.references.map((ref) => `÷ ${ref}`), 'CPU s', cpuUnit, 'peak RSS', 'valid runs'];
  const rows: string[][] = [header];
  for (const r of results.values()) {
    const ok = r.runs.filter((x) => x.valid).length;
    const status = r.skipped !== undefined ? `skipped: ${r.skipped}` : `${ok}/${r.runs.length}${ok < r.runs.length ? ` (${firstError(r)})` : ''}`;
    const timedOut = r.runs.find((x) => x.timedOutAfterSeconds !== undefined)?.timedOutAfterSeconds;
    rows.push([
      r.tool,
      r.medianSeconds !== null ? fmtSeconds(r.medianSeconds) : timedOut !== undefined ? `> ${fmtSeconds(timedOut)}` : '—',
      r.minSeconds !== null && r.maxSeconds !== null ? `${fmtSeconds(r.minSeconds)}–${fmtSeconds(r.maxSeconds)}` : '—',
      r.mbPerSec !== null ? r.mbPerSec.toFixed(0) : '—',
      ...suite.references.map((ref) => fmtRatio(r.ratios[ref] ?? NaN)),
      r.medianCpuSeconds !== null ? fmtSeconds(r.medianCpuSeconds) : '—',
      r.medianCpuSeconds !== null ? fmtSeconds(cpuPer(r.medianCpuSeconds)) : '—',
      Object.entries(r.peakRssKb).map(([k, v]) => `${k} ${v === null ? '?' : `${(v / 1024).toFixed(0)} MB`}`).join(', ') || '—',
      status,
    ]);
  }
  out();
  out(textTable(rows));
  for (const l of suite.notes?.(ds) ?? []) out(l);
  const md = [
    `#### ${suite.name} · ${ds.name} (${ds.files.toLocaleString('en-US')} files, ${(ds.bytes / 1e6).toFixed(0)} MB): ${suite.title}`,
    '',
    markdownTable(rows),
    ...(suite.notes?.(ds) ?? []).map((l) => `\n${l}`),
  ].join('\n');
  return { results: [...results.values()], markdown: md, invalid };
}

function firstError(r: ToolResult): string {
  const e = r.runs.find((x) => x.error !== undefined)?.error ?? 'invalid';
  return e.length > 80 ? `${e.slice(0, 77)}...` : e;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`bench: ${(e as Error)?.message ?? String(e)}\n`);
    process.exitCode = 2;
  },
);
