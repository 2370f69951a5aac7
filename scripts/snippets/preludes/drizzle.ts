// The README's Drizzle recipe: the table as Drizzle sees it (docs/orms.md#drizzle).
import { sql as drizzleSql } from 'drizzle-orm'
import { bigserial as drizzleBigserial, pgTable as drizzlePgTable, text as drizzleText } from 'drizzle-orm/pg-core'

const events = drizzlePgTable('events', {
  id: drizzleBigserial('id', { mode: 'number' }).primaryKey(),
  orgId: drizzleText('org_id').notNull().default(drizzleSql`current_setting('app.tenant_id', true)`),
  kind: drizzleText('kind').notNull(),
  payload: drizzleText('payload'),
})
