import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ratioOf, summarize, t95 } from '../../coordinator/statistics.js';

const close = (actual: number | undefined, expected: number, digits = 4) => assert.ok(actual !== undefined && Math.abs(actual - expected) < 10 ** -digits, `${actual} ≈ ${expected}`);

describe('statistics of repetitions', () => {
  it("Student's t quantiles: the table, then the normal", () => {
    assert.equal(t95(1), 12.706);
    assert.equal(t95(4), 2.776);
    assert.equal(t95(30), 2.042);
    assert.equal(t95(1000), 1.96);
    assert.throws(() => t95(0), /degrees of freedom/);
  });

  it('mean, sample sd, min-max, 95% interval and cv', () => {
    // 10, 12, 14: mean 12, sd 2, t(2) 4.303 × 2 / √3 = 4.9687, cv 2/12.
    const s = summarize([10, 14, 12])!;
    assert.deepEqual([s.n, s.mean, s.sd, s.min, s.max], [3, 12, 2, 10, 14]);
    close(s.ci95, (4.303 * 2) / Math.sqrt(3));
    close(s.cv, 2 / 12);
  });

  it('one value has no spread to show, none has no summary', () => {
    assert.deepEqual(summarize([5]), { n: 1, mean: 5, sd: 0, min: 5, max: 5, ci95: undefined, cv: undefined });
    assert.equal(summarize([]), undefined);
  });

  it('a ratio of means with its interval (delta method)', () => {
    const a = summarize([10, 12, 14])!;
    const b = summarize([20, 20, 20])!;
    const r = ratioOf(a, b)!;
    close(r.ratio, 0.6);
    // b has no spread: the interval is a's relative one, t(2) × 0.6 × (2/√3)/12.
    close(r.ci95, 4.303 * 0.6 * (2 / Math.sqrt(3) / 12));
    assert.equal(ratioOf(a, summarize([20])!)?.ci95, undefined, 'no interval against a single run');
    assert.equal(ratioOf(a, summarize([0, 0])!), undefined, 'no ratio against zero');
  });
});
