// A worker: its resources now and over the last hour, day or week (metrics_manager's history of
// what the worker's /metrics says), who it is, its drivers and labels, the instances it runs.

import { Text, View } from 'react-native';

import { Button } from '../components/Button';
import { Card } from '../components/Card';
import { HistoryChart } from '../components/Chart';
import { ErrorBanner } from '../components/ErrorBanner';
import { HistoryBanner, RangePicker } from '../components/History';
import { Meter } from '../components/Meter';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { StatusBadge } from '../components/StatusBadge';
import { Table } from '../components/Table';
import { ago, bytes, dateTime, pct, shortId } from '../format';
import { METRICS_RANGES, combineBy, gauge, historyMessage, pointsOf, rangeOf, useMetricHistory, type MetricsRange } from '../hooks/useMetrics';
import { useWorker, useWorkerInstances } from '../hooks/useWorkers';
import { useRouter } from '../router';
import { colors } from '../theme';
import { workersStyles as s } from './workers.styles';

function Fact({ label, value, testID }: { label: string; value: string; testID?: string }) {
  return (
    <View style={s.fact}>
      <Text style={s.factLabel}>{label}</Text>
      <Text style={s.factValue} testID={testID}>
        {value}
      </Text>
    </View>
  );
}

export function WorkerDetailScreen({ id, range }: { id: string; range?: string }) {
  const worker = useWorker(id);
  const instances = useWorkerInstances(id);
  const { navigate } = useRouter();
  const w = worker.data;
  const r = w?.resources;
  const shown = rangeOf(range);

  return (
    <Screen kicker="Worker" title={w?.name ?? 'Worker'} subtitle={w ? `${w.hostname} · ${w.ip_address}` : undefined} actions={w ? <StatusBadge status={w.status} testID="worker-status" /> : null} testID="worker-detail-screen">
      <View style={s.top}>
        <Button label="← All workers" size="small" variant="ghost" onPress={() => navigate({ name: 'workers' })} />
        <Button label="Logs" size="small" variant="ghost" onPress={() => navigate({ name: 'logs', worker: id })} testID="worker-logs" accessibilityLabel="This worker's lines in Logs" />
      </View>
      <ErrorBanner error={worker.error} onRetry={() => void worker.reload()} />
      {!w && !worker.error ? <Spinner label="Loading the worker…" /> : null}
      {w && r ? (
        <>
          <View style={s.columns}>
            <Card title="Resources" style={s.column}>
              <Meter label={`CPU · ${r.cpu_cores} cores`} used={r.cpu_usage_percent} total={100} detail={`${pct(r.cpu_usage_percent)} in use`} />
              <Meter
                label="Memory"
                used={r.memory_total_bytes - r.memory_available_bytes}
                total={r.memory_total_bytes}
                detail={`${bytes(r.memory_available_bytes)} free of ${bytes(r.memory_total_bytes)}`}
              />
              <Meter label="Disk" used={r.disk_total_bytes - r.disk_free_bytes} total={r.disk_total_bytes} detail={`${bytes(r.disk_free_bytes)} free of ${bytes(r.disk_total_bytes)}`} />
            </Card>
            <Card title="Identity" style={s.column}>
              <View style={s.facts}>
                <Fact label="Id" value={w.id} />
                <Fact label="Last heartbeat" value={`${ago(w.last_heartbeat_at)} (${dateTime(w.last_heartbeat_at)})`} testID="worker-heartbeat" />
                <Fact label="Registered" value={dateTime(w.registered_at)} />
                <Fact label="Operating system" value={r.os ?? '—'} />
                <Fact label="Worker API" value={w.api_url ?? 'none'} />
              </View>
            </Card>
          </View>
          <WorkerHistory
            id={id}
            range={shown}
            memoryTotal={r.memory_total_bytes}
            onRange={(to) => navigate({ name: 'worker', id, range: to }, { replace: true })}
          />
          <View style={s.columns}>
            <Card title="Drivers" style={s.column}>
              <View style={s.chips} testID="worker-drivers">
                {(r.drivers ?? []).length === 0 ? <Text style={s.none}>No runtime driver reported.</Text> : null}
                {(r.drivers ?? []).map((d) => (
                  <View key={d.name} style={s.chip}>
                    <Text style={s.chipKey}>{d.name}</Text>
                    <Text style={s.chipValue}>{d.version ?? 'available'}</Text>
                  </View>
                ))}
              </View>
              {(r.unavailable_drivers ?? []).length > 0 ? (
                <View testID="worker-drivers-unavailable">
                  {(r.unavailable_drivers ?? []).map((d) => (
                    <Text key={d.name} style={s.none}>
                      {`${d.name}: not offered (${d.reason})`}
                    </Text>
                  ))}
                </View>
              ) : null}
            </Card>
            <Card title="Labels" style={s.column}>
              <View style={s.chips} testID="worker-labels">
                {Object.keys(w.labels).length === 0 ? <Text style={s.none}>No labels.</Text> : null}
                {Object.entries(w.labels).map(([k, v]) => (
                  <View key={k} style={s.chip}>
                    <Text style={s.chipKey}>{k}</Text>
                    <Text style={s.chipValue}>{v}</Text>
                  </View>
                ))}
              </View>
            </Card>
          </View>
        </>
      ) : null}
      <Card title="Instances on this worker">
        <ErrorBanner error={instances.error} onRetry={() => void instances.reload()} />
        {!instances.data && !instances.error ? <Spinner label="Loading instances…" /> : null}
        {instances.data ? (
          <Table
            testID="worker-instances"
            data={instances.data}
            keyOf={(i) => i.id}
            onPress={(i) => (i.service ? navigate({ name: 'service', service: i.service }) : undefined)}
            empty="Nothing runs here."
            columns={[
              { key: 'service', title: 'Service', flex: 2, render: (i) => i.service ?? (i.spec.image ?? i.spec.command?.join(' ') ?? '—') },
              { key: 'id', title: 'Instance', render: (i) => shortId(i.id) },
              { key: 'state', title: 'State', render: (i) => <StatusBadge status={i.state} /> },
              { key: 'health', title: 'Health', render: (i) => <StatusBadge status={i.health} /> },
              { key: 'restarts', title: 'Restarts', render: (i) => String(i.restarts) },
              { key: 'address', title: 'Address', render: (i) => i.address ?? '—' },
              {
                key: 'logs',
                title: '',
                flex: 0.6,
                render: (i) => (
                  <Button
                    label="Logs"
                    size="small"
                    variant="ghost"
                    onPress={() => navigate({ name: 'logs', instance: i.id })}
                    testID={`worker-instance-logs-${i.id}`}
                    accessibilityLabel={`Logs of instance ${shortId(i.id)}`}
                  />
                ),
              },
            ]}
          />
        ) : null}
      </Card>
      {r && (r.network ?? []).length > 0 ? (
        <Card title="Network">
          <Table
            data={r.network ?? []}
            keyOf={(n) => n.name}
            columns={[
              { key: 'name', title: 'Interface', render: (n) => n.name },
              { key: 'addresses', title: 'Addresses', flex: 2, render: (n) => (n.addresses ?? []).join(', ') || '—' },
              { key: 'rx', title: 'Received', render: (n) => bytes(n.rx_bytes ?? 0) },
              { key: 'tx', title: 'Sent', render: (n) => bytes(n.tx_bytes ?? 0) },
            ]}
          />
        </Card>
      ) : null}
    </Screen>
  );
}

/** The worker's CPU, memory and disk over `range`, from what metrics_manager scraped of its /metrics. */
function WorkerHistory({ id, range, memoryTotal, onRange }: { id: string; range: MetricsRange; memoryTotal: number; onRange(range: MetricsRange): void }) {
  const mine = ['job=worker', `worker=${id}`];
  const history = useMetricHistory(
    {
      cpu: gauge('aerekos_worker_cpu_usage_percent', mine),
      memoryTotal: gauge('aerekos_worker_memory_total_bytes', mine),
      memoryAvailable: gauge('aerekos_worker_memory_available_bytes', mine),
      disk: gauge('aerekos_worker_disk_used_percent', mine),
    },
    range,
  );
  const h = history.data?.series;
  const memory = combineBy({ total: h?.memoryTotal, free: h?.memoryAvailable }, 'worker', ([m]) => (m ? m.total - m.free : undefined));
  const chart = {
    start: history.data?.start ?? 0,
    end: history.data?.end ?? 0,
    since: METRICS_RANGES[range].since,
    message: history.data ? undefined : historyMessage(history.error),
    empty: 'No sample in this range: the worker serves no API for metrics_manager to scrape, or it has not been scraped yet.',
  };
  return (
    <Card title="History" subtitle="As metrics_manager scraped the worker's /metrics" actions={<RangePicker range={range} onChange={onRange} />} testID="worker-history">
      <HistoryBanner error={history.error} onRetry={() => void history.reload()} />
      <View style={s.charts}>
        <View style={s.chart}>
          <HistoryChart title="CPU in use" points={pointsOf(h?.cpu)} max={100} format={pct} {...chart} testID="worker-chart-cpu" />
        </View>
        <View style={s.chart}>
          <HistoryChart title="Memory used" points={memory} max={memoryTotal > 0 ? memoryTotal : undefined} format={bytes} color={colors.goldBright} {...chart} testID="worker-chart-memory" />
        </View>
        <View style={s.chart}>
          <HistoryChart title="Disk used" points={pointsOf(h?.disk)} max={100} format={pct} color={colors.goldDim} {...chart} testID="worker-chart-disk" />
        </View>
      </View>
    </Card>
  );
}
