/**
 * Seed 004's model: organisations and their events, keyed by a UUID `org_id`, and policies that
 * compare it with the `app.tenant_id` setting that pg-tenant writes for each query.
 *
 * Roles (prefixed with the example's name, `events` by default):
 * - `events_owner` owns the tables; never logs in.
 * - `events_app`   the login role of the web app: not superuser, not BYPASSRLS, owns nothing.
 */
import pg from 'pg'
import { InvalidTenantError } from '../../src/index.js'
import { quoteIdent, quoteLiteral, randomPassword, urlFor } from '../shared/demo.js'

export interface EventsDatabase {
  readonly name: string
  /** Connection string of the unprivileged login role (the tenant pool). */
  readonly appUrl: string
  /** Drops the database and the roles. */
  drop(): Promise<void>
}

export interface Organisation {
  readonly org_id: string
  readonly name: string
}

/** Fixed ids, so that the printed curl lines work run after run. */
export const DEMO_ORGANISATIONS: readonly Organisation[] = [
  { org_id: 'c4062d63-335e-4631-b03c-504d0eb88122', name: 'Acme' },
  { org_id: '7b0e4a52-3f4e-4f8e-9a51-0a8f9a4c2d11', name: 'Globex' },
  { org_id: '2f1c9d8e-6b7a-4c3d-8e9f-1a2b3c4d5e6f', name: 'Initech' },
]

/** An organisation id: a UUID, in any case. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * The organisation of a request, from its `x-org-id` header (what the Fastify and Kysely apps'
 * resolvers share): `undefined` without one (401 TENANT_REQUIRED), an `InvalidTenantError` (400
 * INVALID_TENANT) for anything but one UUID, such as `"<uuid>, <uuid>"`, which is how Node hands
 * over the header sent twice. In a real app the organisation comes from a verified token or the
 * session.
 */
export function orgIdOf(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined
  if (typeof header !== 'string' || !UUID.test(header)) {
    throw new InvalidTenantError('x-org-id must be one organisation UUID')
  }
  return header.toLowerCase()
}

// `current_setting(name, true)` is NULL before the setting was ever written on a connection and
// '' after a transaction that wrote it has ended: nullif makes both NULL, so the policy matches
// nothing. The sub-select makes PostgreSQL evaluate it once per statement, not once per row.
const TENANT = `(select nullif(current_setting('app.tenant_id', true), '')::uuid)`
// A column DEFAULT may not contain a sub-select.
const TENANT_DEFAULT = `nullif(current_setting('app.tenant_id', true), '')::uuid`

/** Creates the database, roles, tables and policies, connected as a superuser (`serverUrl`). */
export async function createEventsDatabase(serverUrl: string, name = 'events'): Promise<EventsDatabase> {
  if (!/^[a-z][a-z0-9_]{0,30}$/.test(name)) throw new Error(`bad example name ${name}`)
  const owner = quoteIdent(`${name}_owner`)
  const app = quoteIdent(`${name}_app`)
  const password = randomPassword()

  const server = new pg.Client({ connectionString: serverUrl })
  await server.connect()
  try {
    await server.query(`create role ${owner} nologin`)
    await server.query(
      `create role ${app} login nosuperuser nobypassrls nocreatedb nocreaterole
         password ${quoteLiteral(password)}`,
    )
    await server.query(`create database ${quoteIdent(name)} owner ${owner}`)
  } finally {
    await server.end()
  }

  const dbUrl = new URL(serverUrl)
  dbUrl.pathname = `/${name}`
  const setup = new pg.Client({ connectionString: dbUrl.toString() })
  await setup.connect()
  try {
    await setup.query(`
      revoke create on schema public from public;
      grant usage on schema public to ${app};
      grant create on schema public to ${owner};
      set role ${owner};

      create table organization (
        org_id uuid primary key default gen_random_uuid(),
        name varchar(255) unique not null,
        created_at timestamptz not null default now()
      );
      create table events (
        event_id bigserial primary key,
        org_id uuid not null default ${TENANT_DEFAULT} references organization (org_id),
        event_type text not null,
        event_value int,
        occurred_at timestamptz not null default now()
      );
      create index on events (org_id, occurred_at);

      alter table organization enable row level security;
      alter table organization force row level security;
      create policy organization_isolation on organization to ${app}
        using (org_id = ${TENANT});

      alter table events enable row level security;
      alter table events force row level security;
      create policy event_isolation on events to ${app}
        using (org_id = ${TENANT})
        with check (org_id = ${TENANT});

      grant select on organization to ${app};
      grant select, insert, update, delete on events to ${app};
      grant usage on sequence events_event_id_seq to ${app};
      reset role;
    `)
    for (const org of DEMO_ORGANISATIONS) {
      await setup.query('insert into organization (org_id, name) values ($1, $2)', [org.org_id, org.name])
    }
  } finally {
    await setup.end()
  }

  return {
    name,
    appUrl: urlFor(serverUrl, `${name}_app`, password, name),
    async drop() {
      const client = new pg.Client({ connectionString: serverUrl })
      await client.connect()
      try {
        await client.query(`drop database if exists ${quoteIdent(name)} with (force)`)
        await client.query(`drop role if exists ${app}`)
        await client.query(`drop role if exists ${owner}`)
      } finally {
        await client.end()
      }
    },
  }
}
