import type { CampaignSpec } from '../../src/campaign/spec.js';

/** A rewrap campaign of `sources` for tests of the store and planner, which never call KMS. */
export function campaignSpec(sources: CampaignSpec['sources'], overrides: Partial<CampaignSpec> = {}): CampaignSpec {
  return {
    name: 'test',
    mode: 'rewrap',
    targetKey: 'alias/new',
    targetKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/new',
    sourceKeyArns: [],
    targetFormat: 'same',
    priority: 'scheduled',
    sources,
    kmsRequestsPerSecond: 100,
    batchSize: 100,
    reportTo: '/tmp/rekey-test-reports',
    ...overrides,
  };
}
