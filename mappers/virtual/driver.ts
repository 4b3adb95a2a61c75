/**
 * @module
 * The virtual device driver (protocol `virtualProtocol`), after KubeEdge's mappers-go
 * `virtualdevice`: a simulated sensor whose desired value is the ceiling of what it reads.
 * - INT: a random integer in [minimum, desired) — KubeEdge: `rand.Intn(desired)`.
 * - FLOAT / DOUBLE: a random number in [minimum, desired) — KubeEdge returns `rand.Float64()`
 *   in [0, 1) whatever the desired value; here the desired value bounds floats too, so a
 *   temperature or humidity sensor reads plausible numbers.
 * - Before any desired value: the model's maximum is the ceiling (else 100 for INT, 1 for
 *   floats) — KubeEdge's INT read fails until a value is written.
 * - BOOLEAN: random; STRING (and other types): the last value written.
 * The lower bound is the model's minimum when below the ceiling, else 0.
 * Writes store the new ceiling (a value that is not a number is refused for numeric types).
 */
import type { ConfigData } from '../../shared/devices/index.js';
import { DeviceInvalidError } from '../../shared/errors/index.js';
import type { Driver, DriverDevice, DriverProperty } from '../sdk/index.js';
import { formatValue, parseValue } from '../sdk/index.js';

export const VIRTUAL_PROTOCOL = 'virtualProtocol';

export interface VirtualDriverOptions {
  /** Random source in [0, 1). Default Math.random. */
  random?: () => number;
}

function isNumeric(p: DriverProperty): boolean {
  return p.type === 'INT' || p.type === 'FLOAT' || p.type === 'DOUBLE';
}

class VirtualDevice implements DriverDevice {
  /** Per property: the ceiling (numeric types) or the stored value. */
  private readonly values = new Map<string, number | boolean | string>();
  private stopped = false;

  constructor(private readonly random: () => number) {}

  private ceiling(p: DriverProperty): number {
    const v = this.values.get(p.name);
    if (typeof v === 'number') return v;
    return p.maximum ?? (p.type === 'INT' ? 100 : 1);
  }

  async read(p: DriverProperty, _visitor: ConfigData): Promise<string> {
    if (this.stopped) throw new DeviceInvalidError('device stopped');
    if (isNumeric(p)) {
      const max = this.ceiling(p);
      const min = p.minimum !== undefined && p.minimum < max ? p.minimum : Math.min(0, max);
      if (p.type === 'INT') {
        const lo = Math.ceil(min);
        const span = Math.ceil(max) - lo;
        if (span <= 0) return String(lo);
        return String(lo + Math.floor(this.random() * span));
      }
      // Rounded to 2 decimals, as a real sensor's reading would be; still strictly below max.
      const x = min + this.random() * (max - min);
      const rounded = Math.floor(x * 100) / 100;
      return formatValue(p.type, Math.max(rounded, min));
    }
    if (p.type === 'BOOLEAN') return String(this.random() < 0.5);
    const v = this.values.get(p.name);
    return v === undefined ? '' : String(v);
  }

  async write(p: DriverProperty, _visitor: ConfigData, value: string): Promise<void> {
    if (this.stopped) throw new DeviceInvalidError('device stopped');
    const parsed = parseValue(p.type, value);
    if (isNumeric(p) && typeof parsed !== 'number') throw new DeviceInvalidError(`${p.name}: "${value}" is not a number`);
    this.values.set(p.name, parsed);
  }

  async state(): Promise<string> {
    return this.stopped ? 'offline' : 'ok';
  }

  async stop(): Promise<void> {
    this.stopped = true;
  }
}

/** The virtual driver: every device is simulated in memory; init never fails. */
export function createVirtualDriver(options: VirtualDriverOptions = {}): Driver {
  const random = options.random ?? Math.random;
  return {
    init: async () => new VirtualDevice(random),
  };
}
