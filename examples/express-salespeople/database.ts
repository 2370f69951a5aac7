/**
 * Seed 000's model: salespeople and their clients, one database role per salesperson, and a
 * policy on `clients` that compares the row's salesperson with `current_user`.
 *
 * Roles (all prefixed with the example's name, `sales` by default):
 * - `sales_owner`   owns the tables; never logs in.
 * - `sales_app`     the login role of the web app: not superuser, not BYPASSRLS, owns nothing,
 *                   NOINHERIT. It may `SET ROLE` to each salesperson, and holds no table
 *                   privileges itself.
 * - `sales_admin`   a login role with CREATEROLE, used only to create salespeople.
 * - `sales_group`   the group role every salesperson is in; the grants are on it.
 * - `sales_sp_<id>` one per salesperson, created when the salesperson is.
 */
import pg from 'pg'
import { quoteIdent, quoteLiteral, randomPassword, urlFor } from '../shared/demo.js'

export interface SalesDatabase {
  readonly name: string
  /** Connection string of the unprivileged login role (the tenant pool). */
  readonly appUrl: string
  /** Connection string of the role that creates salespeople (CREATEROLE, no table reads). */
  readonly adminUrl: string
  /** The allow-list for the tenant pool: exactly the salesperson roles. */
  readonly salespersonRole: RegExp
  /** The role name of salesperson `id`. */
  roleOf(id: number | string): string
  /** Drops the database and every role the example created. */
  drop(): Promise<void>
}

export interface Salesperson {
  readonly id: number
  readonly name: string
  readonly role: string
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** Creates the database, roles, tables and policy, connected as a superuser (`serverUrl`). */
export async function createSalesDatabase(serverUrl: string, name = 'sales'): Promise<SalesDatabase> {
  if (!/^[a-z][a-z0-9_]{0,30}$/.test(name)) throw new Error(`bad example name ${name}`)
  const role = {
    owner: `${name}_owner`,
    app: `${name}_app`,
    admin: `${name}_admin`,
    group: `${name}_group`,
  }
  const q = {
    owner: quoteIdent(role.owner),
    app: quoteIdent(role.app),
    admin: quoteIdent(role.admin),
    group: quoteIdent(role.group),
  }
  const appPassword = randomPassword()
  const adminPassword = randomPassword()

  const server = new pg.Client({ connectionString: serverUrl })
  await server.connect()
  try {
    await server.query(`create role ${q.owner} nologin`)
    await server.query(`create role ${q.group} nologin`)
    await server.query(
      `create role ${q.app} login noinherit nosuperuser nobypassrls nocreatedb nocreaterole
         password ${quoteLiteral(appPassword)}`,
    )
    await server.query(
      `create role ${q.admin} login noinherit createrole nosuperuser nobypassrls nocreatedb
         password ${quoteLiteral(adminPassword)}`,
    )
    // The admin role may put new salespeople in the group (PostgreSQL 16+ asks for ADMIN OPTION).
    await server.query(`grant ${q.group} to ${q.admin} with admin option`)
    await server.query(`create database ${quoteIdent(name)} owner ${q.owner}`)
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
      grant usage on schema public to ${q.app}, ${q.admin}, ${q.group};
      grant create on schema public to ${q.owner};
      set role ${q.owner};

      create table salespeople (
        id serial primary key,
        name text not null,
        role_name text unique
      );
      create table clients (
        id serial primary key,
        name text not null,
        salesperson_id integer not null references salespeople (id)
      );

      -- The salesperson the current role is: NULL for any other role.
      create function current_salesperson_id() returns integer
        language sql stable
        as $$ select id from salespeople where role_name = current_user $$;

      -- Each salesperson reads only their own row (which current_salesperson_id() needs): names
      -- and role names of the others stay hidden. The admin role creates and names salespeople.
      alter table salespeople enable row level security;
      alter table salespeople force row level security;
      create policy salesperson_self on salespeople for select to ${q.group}
        using (role_name = current_user);
      create policy admin_manages_salespeople on salespeople to ${q.admin}
        using (true) with check (true);

      alter table clients enable row level security;
      alter table clients force row level security;
      create policy salesperson_clients on clients
        using (salesperson_id = (select current_salesperson_id()))
        with check (salesperson_id = (select current_salesperson_id()));
      alter table clients alter column salesperson_id set default current_salesperson_id();

      grant select on salespeople to ${q.group};
      grant select, insert, update on clients to ${q.group};
      grant usage on sequence clients_id_seq to ${q.group};
      grant select, insert, update on salespeople to ${q.admin};
      grant usage on sequence salespeople_id_seq to ${q.admin};
      reset role;
    `)
  } finally {
    await setup.end()
  }

  const roleOf = (id: number | string) => `${name}_sp_${id}`
  return {
    name,
    appUrl: urlFor(serverUrl, role.app, appPassword, name),
    adminUrl: urlFor(serverUrl, role.admin, adminPassword, name),
    salespersonRole: new RegExp(`^${escapeRegExp(name)}_sp_[1-9][0-9]*$`),
    roleOf,
    async drop() {
      const client = new pg.Client({ connectionString: serverUrl })
      await client.connect()
      try {
        await client.query(`drop database if exists ${quoteIdent(name)} with (force)`)
        const { rows } = await client.query<{ rolname: string }>(
          `select rolname from pg_roles where rolname like $1 escape '\\'`,
          [`${name.replaceAll('_', '\\_')}\\_sp\\_%`],
        )
        for (const { rolname } of rows) await client.query(`drop role if exists ${quoteIdent(rolname)}`)
        for (const r of [role.admin, role.app, role.group, role.owner]) {
          await client.query(`drop role if exists ${quoteIdent(r)}`)
        }
      } finally {
        await client.end()
      }
    },
  }
}

/**
 * Creates a salesperson and, in the same transaction, the database role they will run as: the
 * role is named after the generated id (two salespeople may share a name), quoted with
 * {@link quoteIdent} because CREATE ROLE and GRANT take no bind parameters, put in the group that
 * holds the grants, and granted to the app's login role so that it may switch to it.
 */
export async function createSalesperson(
  admin: pg.Pool,
  db: Pick<SalesDatabase, 'roleOf' | 'name'>,
  name: string,
): Promise<Salesperson> {
  const client = await admin.connect()
  try {
    await client.query('begin')
    const { rows } = await client.query<{ id: number }>(
      'insert into salespeople (name) values ($1) returning id',
      [name],
    )
    const id = rows[0]!.id
    const role = db.roleOf(id)
    await client.query(`create role ${quoteIdent(role)} nologin`)
    await client.query(`grant ${quoteIdent(`${db.name}_group`)} to ${quoteIdent(role)}`)
    await client.query(`grant ${quoteIdent(role)} to ${quoteIdent(`${db.name}_app`)}`)
    await client.query('update salespeople set role_name = $1 where id = $2', [role, id])
    await client.query('commit')
    return { id, name, role }
  } catch (err) {
    await client.query('rollback').catch(() => undefined)
    throw err
  } finally {
    client.release()
  }
}
