import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError } from 'commander';
import { ageCutoff } from '../../src/campaign/spec.js';
import { duration, formatDurationFlag } from '../../src/cli/options.js';
import { replacedBy } from '../../src/rotate/replaced-versions.js';
import { notDue, rotationTarget } from '../../src/rotate/target.js';

const target = (modifiedBefore?: number) =>
  rotationTarget({ mode: 'rewrap', targetKey: 'k', targetKeyArn: 'arn:new', targetFormat: 'same', sourceKeyArns: [], modifiedBefore });

test('durations read as a number and one unit, and print back the same way', () => {
  const every = duration('--every', 1000);
  assert.deepEqual(['2s', '15m', '12h', '90d', '2w'].map(every), [2_000, 900_000, 43_200_000, 7_776_000_000, 1_209_600_000]);
  for (const bad of ['0s', '7', 'd', '1.5d', '7 d', 'weekly', '-1d']) assert.throws(() => every(bad), InvalidArgumentError, bad);
  assert.equal(duration('--min-age', 0)('0s'), 0);
  assert.deepEqual([0, 2_000, 90_000, 86_400_000, 7_776_000_000, 1_209_600_000].map(formatDurationFlag), ['0s', '2s', '90s', '1d', '90d', '2w']);
});

test('the age cut-off is whole seconds, one before the last second old enough, so a write at the run never looks old', () => {
  const firedAt = Date.UTC(2026, 0, 10, 12, 0, 30, 700);
  const cutoff = ageCutoff(firedAt, 10_000);
  assert.equal(cutoff, Date.UTC(2026, 0, 10, 12, 0, 19));
  // LastModified is truncated to the second: a write at or after the firing is never at or before the cut-off.
  assert.ok(Math.floor(firedAt / 1000) * 1000 > ageCutoff(firedAt, 0));
});

test('an object is due by key without a cut-off, and by date with one', () => {
  assert.match(notDue(target(), 'arn:new', new Date(0))!, /already under the target key/);
  assert.equal(notDue(target(), 'arn:old', new Date()), undefined);
  const cut = Date.UTC(2026, 0, 1);
  assert.equal(notDue(target(cut), 'arn:new', new Date(cut)), undefined, 'old enough: due even under the target key');
  assert.match(notDue(target(cut), 'arn:old', new Date(cut + 1000))!, /modified after the age cut-off/);
  assert.ok(notDue(target(cut), 'arn:old', undefined), 'no date, no proof of age: left alone');
});

test('only a version both reads and writes name, and that differs, counts as replaced', () => {
  assert.deepEqual(replacedBy('k', 'v1', 'v2'), [{ key: 'k', versionId: 'v1' }]);
  assert.deepEqual(replacedBy('k', 'null', 'v2'), [{ key: 'k', versionId: 'null' }], 'an object from before versioning was enabled');
  assert.deepEqual(replacedBy('k', 'v1', 'v1'), [], 'rewritten in place');
  assert.deepEqual(replacedBy('k', undefined, undefined), [], 'unversioned');
  assert.deepEqual(replacedBy('k', 'null', undefined), [], 'a write that names no version may have replaced the one read');
});
