/**
 * The two frontend messages that run a prepared prefix statement, Bind and Execute, encoded once
 * per statement and tenant and then written as one buffer: the hot path of a lone scoped query
 * serializes nothing for the tenant. The format is the protocol's own (PostgreSQL docs, "Message
 * Formats"); values are text, UTF-8, as pg sends them with its default client encoding.
 */

/**
 * `Bind` (unnamed portal, `statement`, text parameters, text results) then `Execute` (unnamed
 * portal, all rows), byte for byte as pg's serializer writes them. The caller keeps the result
 * with the statement it encodes (see `PrefixStatement.wire`).
 */
export function bindAndExecute(statement: string, values: readonly string[]): Buffer {
  const name = Buffer.from(`${statement}\0`, 'utf8')
  const params = values.map((value) => Buffer.from(value, 'utf8'))
  // Laid out as pg-protocol lays out its own Bind: portal "\0", statement name, one format code
  // per parameter (0: text), the parameters (length, bytes), one result format code (0: text).
  const bindBody = 1 + name.length + 2 + 2 * params.length + 2 + params.reduce((n, p) => n + 4 + p.length, 0) + 2 + 2
  const buffer = Buffer.alloc(1 + 4 + bindBody + 1 + 4 + 1 + 4)
  let at = buffer.write('B', 0, 'latin1')
  at = buffer.writeInt32BE(4 + bindBody, at)
  at = buffer.writeUInt8(0, at) // unnamed portal
  at += name.copy(buffer, at)
  at = buffer.writeInt16BE(params.length, at)
  for (let i = 0; i < params.length; i++) at = buffer.writeInt16BE(0, at)
  at = buffer.writeInt16BE(params.length, at)
  for (const param of params) {
    at = buffer.writeInt32BE(param.length, at)
    at += param.copy(buffer, at)
  }
  at = buffer.writeInt16BE(1, at)
  at = buffer.writeInt16BE(0, at)
  at += buffer.write('E', at, 'latin1')
  at = buffer.writeInt32BE(4 + 1 + 4, at)
  at = buffer.writeUInt8(0, at) // unnamed portal
  buffer.writeInt32BE(0, at) // no row limit
  return buffer
}
