// The state of the cloud at a glance: workers, services and resources now; CPU, memory, disk and
// live workers over the last hour, day or week (metrics_manager's history, so a reload draws them
// at once); the alerts firing.

import { Text, View } from 'react-native';

import { Button } from '../components/Button';
import { Card } from '../components/Card';
import { HistoryChart } from '../components/Chart';
import { ErrorBanner } from '../components/ErrorBanner';
import { HistoryBanner, RangePicker } from '../components/History';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { Stat } from '../components/Stat';
import { StatusBadge } from '../components/StatusBadge';
import { Table } from '../components/Table';
import { ago, bytes, count, errorMessage, pct } from '../format';
import { METRICS_RANGES, combineBy, gauge, historyMessage, metricsUnavailable, pointsOf, rangeOf, useAlerts, useMetricHistory, type MetricsAlert } from '../hooks/useMetrics';
import { useClusterResources } from '../hooks/useResources';
import { serviceHealth, useServices } from '../hooks/useServices';
import { useRouter } from '../router';
import { colors } from '../theme';
import { alertValue, labelText } from './AlertsScreen';
import { overviewStyles as s } from './overview.styles';

/** The workers' series the cluster's charts are made of, and the conductor's count of live workers. */
const CLUSTER = {
  cpu: gauge('aerekos_worker_cpu_usage_percent', ['job=worker']),
  cores: gauge('aerekos_worker_cpu_cores', ['job=worker']),
  memoryTotal: gauge('aerekos_worker_memory_total_bytes', ['job=worker']),
  memoryAvailable: gauge('aerekos_worker_memory_available_bytes', ['job=worker']),
  diskTotal: gauge('aerekos_worker_disk_total_bytes', ['job=worker']),
  diskFree: gauge('aerekos_worker_disk_free_bytes', ['job=worker']),
  live: gauge('aerekos_workers', ['job=conductor', 'status=live']),
};

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** Of `total`, the share not `free`, over every worker (as the conductor sums them). */
const usedShare = (total: number[], free: number[]) => (sum(total) > 0 ? (100 * (sum(total) - sum(free))) / sum(total) : undefined);

export function OverviewScreen({ range: asked }: { range?: string }) {
  const resources = useClusterResources(5000);
  const services = useServices(5000);
  const { navigate } = useRouter();
  const range = rangeOf(asked);
  const history = useMetricHistory(CLUSTER, range);
  const alerts = useAlerts();
  const latest = resources.data;

  const health = (services.data ?? []).map(serviceHealth);
  const enabled = health.filter((h) => h !== 'disabled');
  const healthy = enabled.filter((h) => h === 'healthy').length;
  const unhealthy = enabled.length - healthy;

  const h = history.data?.series;
  // The conductor's CPU figure: the workers' use weighted by their cores.
  const cpu = combineBy({ use: h?.cpu, cores: h?.cores }, 'worker', (ws) => (sum(ws.map((w) => w.cores)) > 0 ? sum(ws.map((w) => w.use * w.cores)) / sum(ws.map((w) => w.cores)) : undefined));
  const memory = combineBy({ total: h?.memoryTotal, free: h?.memoryAvailable }, 'worker', (ws) => usedShare(ws.map((w) => w.total), ws.map((w) => w.free)));
  const disk = combineBy({ total: h?.diskTotal, free: h?.diskFree }, 'worker', (ws) => usedShare(ws.map((w) => w.total), ws.map((w) => w.free)));
  const live = pointsOf(h?.live);
  const message = historyMessage(history.error);
  const chart = { start: history.data?.start ?? 0, end: history.data?.end ?? 0, since: METRICS_RANGES[range].since, message: history.data ? undefined : message };

  const firing = (alerts.data ?? []).filter((a) => a.state === 'firing');
  const pending = (alerts.data ?? []).length - firing.length;

  return (
    <Screen
      kicker="The cloud at a glance"
      title="Overview"
      subtitle="Live workers, service health and what the cluster has to give; its history as metrics_manager keeps it."
      testID="overview-screen"
    >
      <ErrorBanner error={resources.error} />
      {!latest && !resources.error ? <Spinner label="Reading the cluster…" /> : null}
      {latest ? (
        <View style={s.stats}>
          <Stat label="Workers" value={`${latest.live_workers} live`} detail={`${latest.lost_workers} lost`} testID="stat-workers">
            <View style={s.pair}>
              <StatusBadge status="live" label={`${latest.live_workers} live`} />
              {latest.lost_workers > 0 ? <StatusBadge status="lost" label={`${latest.lost_workers} lost`} /> : null}
            </View>
          </Stat>
          <Stat label="Services" value={services.data ? `${healthy} healthy` : '…'} detail={services.data ? `${unhealthy} unhealthy · ${health.length - enabled.length} disabled` : undefined} testID="stat-services">
            {services.data ? (
              <View style={s.pair}>
                <StatusBadge status="healthy" label={`${healthy} healthy`} />
                {unhealthy > 0 ? <StatusBadge status="unhealthy" label={`${unhealthy} unhealthy`} /> : null}
              </View>
            ) : null}
          </Stat>
          <Stat label="CPU" value={`${latest.cpu_cores} cores`} detail={`${pct(latest.cpu_usage_percent)} in use · ${((latest.cpu_cores * (100 - latest.cpu_usage_percent)) / 100).toFixed(1)} cores free`} testID="stat-cpu" />
          <Stat label="Memory" value={bytes(latest.memory_total_bytes)} detail={`${bytes(latest.memory_available_bytes)} free`} testID="stat-memory" />
          <Stat label="Disk" value={bytes(latest.disk_total_bytes)} detail={`${bytes(latest.disk_free_bytes)} free`} testID="stat-disk" />
        </View>
      ) : null}

      <View style={s.historyBar}>
        <Text style={s.historyTitle}>History</Text>
        <RangePicker range={range} onChange={(r) => navigate({ name: 'overview', range: r }, { replace: true })} />
      </View>
      <HistoryBanner error={history.error} onRetry={() => void history.reload()} />
      <View style={s.charts}>
        <Card title="CPU" subtitle="Use over live cores" style={s.chartCard}>
          <HistoryChart title="in use" points={cpu} max={100} format={pct} {...chart} testID="chart-cpu" />
        </Card>
        <Card title="Memory" subtitle="Share in use on live workers" style={s.chartCard}>
          <HistoryChart title="in use" points={memory} max={100} format={pct} color={colors.goldBright} {...chart} testID="chart-memory" />
        </Card>
        <Card title="Disk" subtitle="Share in use on live workers" style={s.chartCard}>
          <HistoryChart title="in use" points={disk} max={100} format={pct} color={colors.goldDim} {...chart} testID="chart-disk" />
        </Card>
        <Card title="Workers" subtitle="Live, as the conductor counts them" style={s.chartCard}>
          <HistoryChart title="live" points={live} format={count} color={colors.ok} {...chart} testID="chart-workers" />
        </Card>
      </View>

      <Card
        title="Alerts"
        subtitle={alerts.data ? `${firing.length} firing · ${pending} pending` : "metrics_manager's alert rules, evaluated every few seconds"}
        testID="overview-alerts"
        actions={<Button label="All alerts" size="small" variant="ghost" onPress={() => navigate({ name: 'alerts' })} testID="overview-alerts-open" />}
      >
        {alerts.error ? (
          <Text style={s.none} testID="overview-alerts-unavailable">
            {metricsUnavailable(alerts.error) ? 'metrics_manager is not running: no alert is evaluated.' : `The alerts could not be read: ${errorMessage(alerts.error)}`}
          </Text>
        ) : null}
        {!alerts.data && !alerts.error ? <Spinner /> : null}
        {alerts.data && !alerts.error ? (
          firing.length === 0 ? (
            <Text style={s.none} testID="overview-alerts-none">
              {pending > 0 ? `Nothing is firing (${pending} pending).` : 'Nothing is firing.'}
            </Text>
          ) : (
            <Table
              testID="overview-alerts-table"
              data={firing}
              keyOf={(a: MetricsAlert) => `${a.rule} ${labelText(a.labels)}`}
              onPress={() => navigate({ name: 'alerts' })}
              columns={[
                { key: 'rule', title: 'Rule', flex: 1.2, render: (a) => a.rule },
                { key: 'labels', title: 'Series', flex: 3, render: (a) => labelText(a.labels) || '—' },
                { key: 'value', title: 'Value', render: (a) => alertValue(a.value) },
                { key: 'since', title: 'Firing', render: (a) => ago(a.fired_at ?? a.since) },
              ]}
            />
          )
        ) : null}
      </Card>

      <Card title="Services" subtitle="Healthy instances against the replicas asked for" actions={null}>
        <ErrorBanner error={services.error} onRetry={() => void services.reload()} />
        {!services.data && !services.error ? <Spinner /> : null}
        {services.data ? (
          <Table
            testID="overview-services"
            data={services.data}
            keyOf={(x) => x.service.name}
            onPress={(x) => navigate({ name: 'service', service: x.service.name })}
            empty="The catalog is empty."
            columns={[
              { key: 'name', title: 'Service', flex: 2, render: (x) => x.service.name },
              { key: 'state', title: 'State', flex: 1, render: (x) => <StatusBadge status={serviceHealth(x)} /> },
              {
                key: 'replicas',
                title: 'Healthy / replicas',
                flex: 1,
                render: (x) => (x.service.enabled ? `${x.deployment?.healthy ?? 0} / ${x.deployment?.spec?.replicas ?? x.service.deployment?.replicas ?? '—'}` : '—'),
              },
            ]}
          />
        ) : null}
      </Card>
    </Screen>
  );
}
