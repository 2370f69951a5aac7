// The README's MikroORM recipe: the entity (docs/orms.md#mikroorm).
import { EntitySchema as MikroEntitySchema, OptionalProps as MikroOptionalProps } from '@mikro-orm/postgresql'

interface MikroEvent {
  [MikroOptionalProps]?: 'orgId'
  id: string
  orgId: string
  kind: string
  payload: string | null
}

const EventEntity = new MikroEntitySchema<MikroEvent>({
  name: 'Event',
  tableName: 'events',
  properties: {
    id: { type: 'bigint', primary: true, autoincrement: true },
    orgId: { type: 'string', fieldName: 'org_id', defaultRaw: `current_setting('app.tenant_id', true)` },
    kind: { type: 'string' },
    payload: { type: 'string', nullable: true },
  },
})
