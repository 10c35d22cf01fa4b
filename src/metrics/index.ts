/** The Prometheus endpoint: the exporter, and the listen-address helpers the CLI validates flags with. */
export { MetricsExporter, KERNEL_STATS, PREFIX, type MetricsExporterOptions, type MetricsInput } from './exporter.js';
export {
  MetricsListenError,
  formatListenAddress,
  parseListenAddress,
  serveMetrics,
  type ListenAddress,
  type MetricsServer,
  type MetricsSource,
} from './server.js';
