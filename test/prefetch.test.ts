// core/prefetch: an iterator set going before its consumer comes (the sender's walk
// during the connection), passing the same values, its failure, and its end through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prefetch } from '../src/core/prefetch.js';

function recorder(values: number[], failAt = -1): { gen: AsyncGenerator<number>; steps: number[]; finished: () => boolean } {
  const steps: number[] = [];
  let done = false;
  const gen = (async function* () {
    try {
      for (const [i, v] of values.entries()) {
        steps.push(i);
        if (i === failAt) throw new Error(`failed at ${i}`);
        yield v;
      }
    } finally {
      done = true;
    }
  })();
  return { gen, steps, finished: () => done };
}

test('prefetch: pulls ahead before anyone consumes, then yields every value in order', async () => {
  const r = recorder([1, 2, 3, 4, 5]);
  const p = prefetch(r.gen, 2);
  await new Promise((res) => setImmediate(res));
  assert.deepEqual(r.steps, [0, 1], 'two steps ran with no consumer');
  const got: number[] = [];
  for await (const v of p) got.push(v);
  assert.deepEqual(got, [1, 2, 3, 4, 5]);
  assert.ok(r.finished());
});

test('prefetch: a failure during the early pulls reaches the consumer, not the process', async () => {
  const r = recorder([1, 2, 3], 1);
  const p = prefetch(r.gen, 2);
  await new Promise((res) => setTimeout(res, 10));
  const got: number[] = [];
  await assert.rejects(
    (async () => {
      for await (const v of p) got.push(v);
    })(),
    /failed at 1/,
  );
  assert.deepEqual(got, [1]);
});

test('prefetch: stop() with no consumer ends the iterator (its finally runs)', async () => {
  const r = recorder([1, 2, 3, 4]);
  const p = prefetch(r.gen, 2);
  await p.stop();
  assert.ok(r.finished());
  assert.deepEqual(r.steps, [0, 1]);
});

test('prefetch: a consumer that leaves early ends the iterator', async () => {
  const r = recorder([1, 2, 3, 4, 5, 6]);
  for await (const v of prefetch(r.gen, 2)) if (v === 3) break;
  assert.ok(r.finished());
  assert.deepEqual(r.steps, [0, 1, 2]);
});
