import type { RedisClient } from '../config/clients.js';
import type { DurableUploadJournal, UploadIntent } from '../s3/upload-journal.js';
import { campaignKey } from './store.js';

/**
 * The multipart-upload journal of each campaign, in Redis beside the campaign's state (same hash tag,
 * so one slot on Redis Cluster): a killed worker's uploads are aborted later by whichever worker takes
 * its batch over (docs/design.md §4.1).
 */
export class UploadJournals {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  /** The journal of campaign `id`: uploads by upload id, and intents to start one by object. */
  of(id: string): DurableUploadJournal {
    const base = campaignKey(this.prefix, id);
    const uploads = `${base}:uploads`;
    const uploadIntents = `${base}:upload-intents`;
    const redis = this.redis;
    const intentField = (u: { bucket: string; key: string }) => `${u.bucket}/${u.key}`;
    return {
      async starting(intent) {
        await redis.hset(uploadIntents, intentField(intent), JSON.stringify(intent));
      },
      async started(u) {
        await redis
          .multi()
          .hset(uploads, u.uploadId, JSON.stringify({ bucket: u.bucket, key: u.key }))
          .hdel(uploadIntents, intentField(u))
          .exec();
      },
      async intents() {
        return Object.values(await redis.hgetall(uploadIntents)).map((v) => JSON.parse(v) as UploadIntent);
      },
      async dropIntent(intent) {
        await redis.hdel(uploadIntents, intentField(intent));
      },
      async finished(u) {
        await redis.hdel(uploads, u.uploadId);
      },
      async open() {
        const all = await redis.hgetall(uploads);
        return Object.entries(all).map(([uploadId, v]) => ({ uploadId, ...(JSON.parse(v) as { bucket: string; key: string }) }));
      },
    };
  }
}
