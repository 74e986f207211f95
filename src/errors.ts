import type { CID } from 'multiformats/cid'

/**
 * Typed errors thrown by helia-car-mirror. Each class sets `name` (and a static
 * `name`) so callers can test `err.name === UnknownCodecError.name` across
 * realms, the way Helia and libp2p errors are checked.
 *
 * @example
 *
 * ```ts
 * import { HashMismatchError } from 'helia-car-mirror'
 *
 * try {
 *   await verifier.verify(cid, bytes)
 * } catch (err: any) {
 *   if (err.name === HashMismatchError.name) {
 *     // the peer sent bytes that do not hash to the CID
 *   }
 * }
 * ```
 */

/** A block uses a codec this node cannot decode, so its links cannot be followed */
export class UnknownCodecError extends Error {
  static name = 'UnknownCodecError'
  /** Always `'UnknownCodecError'`, also on the class: compare `err.name` with `UnknownCodecError.name` */
  name = 'UnknownCodecError'
}

/** A CID uses a multihash function this node cannot compute, so the block cannot be verified */
export class UnsupportedHashError extends Error {
  static name = 'UnsupportedHashError'
  /** Always `'UnsupportedHashError'`, also on the class: compare `err.name` with `UnsupportedHashError.name` */
  name = 'UnsupportedHashError'
}

/** A block's bytes do not hash to the digest in its CID */
export class HashMismatchError extends Error {
  static name = 'HashMismatchError'
  /** Always `'HashMismatchError'`, also on the class: compare `err.name` with `HashMismatchError.name` */
  name = 'HashMismatchError'
}

/** A block's bytes could not be decoded by its codec */
export class InvalidBlockError extends Error {
  static name = 'InvalidBlockError'
  /** Always `'InvalidBlockError'`, also on the class: compare `err.name` with `InvalidBlockError.name` */
  name = 'InvalidBlockError'
}

/** A block that a walk needed is not in the local blockstore */
export class BlockNotFoundError extends Error {
  static name = 'BlockNotFoundError'
  /** Always `'BlockNotFoundError'`, also on the class: compare `err.name` with `BlockNotFoundError.name` */
  name = 'BlockNotFoundError'
}

/** A peer sent bytes that do not form a valid CAR Mirror frame or message */
export class ProtocolError extends Error {
  static name = 'ProtocolError'
  /** Always `'ProtocolError'`, also on the class: compare `err.name` with `ProtocolError.name` */
  name = 'ProtocolError'
}

/** A frame, block, Bloom filter or list went over a configured limit */
export class LimitExceededError extends Error {
  static name = 'LimitExceededError'
  /** Always `'LimitExceededError'`, also on the class: compare `err.name` with `LimitExceededError.name` */
  name = 'LimitExceededError'

  constructor (message?: string, options?: ErrorOptions) {
    super(message, options)
    // a session keeps its error after it ends (as its abort reason, in its
    // stream): turn the captured stack into text now, so the frames it was
    // thrown through (and the walk state they reference) are not kept with it
    void this.stack
  }
}

/**
 * The sender does not hold some blocks the receiver needs. `cids` names them
 * (at most the first few hundred).
 */
export class BlocksNotAvailableError extends Error {
  static name = 'BlocksNotAvailableError'
  /** Always `'BlocksNotAvailableError'`, also on the class: compare `err.name` with `BlocksNotAvailableError.name` */
  name = 'BlocksNotAvailableError'
  /** The blocks the sender lacks */
  readonly cids: CID[]

  constructor (message: string, cids: CID[] = []) {
    super(message)
    this.cids = cids
  }
}

/** The remote peer refused the session (for example a push it does not allow) */
export class SessionRefusedError extends Error {
  static name = 'SessionRefusedError'
  /** Always `'SessionRefusedError'`, also on the class: compare `err.name` with `SessionRefusedError.name` */
  name = 'SessionRefusedError'
}

/** The remote peer ended the session with an error frame */
export class RemoteError extends Error {
  static name = 'RemoteError'
  /** Always `'RemoteError'`, also on the class: compare `err.name` with `RemoteError.name` */
  name = 'RemoteError'
  /** The error code the remote peer sent */
  readonly code: string

  constructor (message: string, code: string) {
    super(message)
    this.code = code
  }
}

/** The blockstore failed to read or write a block; `cause` holds its error */
export class BlockstoreError extends Error {
  static name = 'BlockstoreError'
  /** Always `'BlockstoreError'`, also on the class: compare `err.name` with `BlockstoreError.name` */
  name = 'BlockstoreError'
}

/** The session saw no traffic for longer than its idle timeout */
export class SessionTimeoutError extends Error {
  static name = 'SessionTimeoutError'
  /** Always `'SessionTimeoutError'`, also on the class: compare `err.name` with `SessionTimeoutError.name` */
  name = 'SessionTimeoutError'
}

/** The stream ended before the session was complete */
export class SessionClosedError extends Error {
  static name = 'SessionClosedError'
  /** Always `'SessionClosedError'`, also on the class: compare `err.name` with `SessionClosedError.name` */
  name = 'SessionClosedError'
}

/** `helia.carMirror` was used before `helia.start()` made it ready */
export class NotStartedError extends Error {
  static name = 'NotStartedError'
  /** Always `'NotStartedError'`, also on the class: compare `err.name` with `NotStartedError.name` */
  name = 'NotStartedError'
}

/**
 * CAR Mirror was added to a Helia node without libp2p (for example
 * `createHeliaLight()` without `withLibp2p`): it has no way to reach peers
 */
export class MissingLibp2pError extends Error {
  static name = 'MissingLibp2pError'
  /** Always `'MissingLibp2pError'`, also on the class: compare `err.name` with `MissingLibp2pError.name` */
  name = 'MissingLibp2pError'
}

/** `pull(..., { pin: true })` on a node without Helia's pins (a bare `createCarMirror` without the `pins` component) */
export class PinningUnavailableError extends Error {
  static name = 'PinningUnavailableError'
  /** Always `'PinningUnavailableError'`, also on the class: compare `err.name` with `PinningUnavailableError.name` */
  name = 'PinningUnavailableError'
}

/**
 * A pull that named no peer found none that could serve it: no provider
 * was given, connected or found through routing, or every one failed
 * (`errors` holds each one's error, in the order they were tried)
 */
export class NoProviderError extends Error {
  static name = 'NoProviderError'
  /** Always `'NoProviderError'`, also on the class: compare `err.name` with `NoProviderError.name` */
  name = 'NoProviderError'
  /** Each provider's error, in the order they were tried */
  readonly errors: Error[]

  constructor (message: string, errors: Error[] = []) {
    super(message, { cause: errors.at(-1) })
    this.errors = errors
  }
}
