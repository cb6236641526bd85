// The state of the cloud at a glance: workers, services, resources now and over the last minutes.

import { View } from 'react-native';

import { Card } from '../components/Card';
import { BarChart } from '../components/Chart';
import { ErrorBanner } from '../components/ErrorBanner';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { Stat } from '../components/Stat';
import { StatusBadge } from '../components/StatusBadge';
import { Table } from '../components/Table';
import { bytes, pct, percent } from '../format';
import { MAX_SAMPLES, SAMPLE_EVERY_MS, useResourceHistory } from '../hooks/useResources';
import { serviceHealth, useServices } from '../hooks/useServices';
import { useRouter } from '../router';
import { colors } from '../theme';
import { overviewStyles as s } from './overview.styles';

export function OverviewScreen() {
  const { samples, latest, error, loading } = useResourceHistory();
  const services = useServices(5000);
  const { navigate } = useRouter();

  const health = (services.data ?? []).map(serviceHealth);
  const enabled = health.filter((h) => h !== 'disabled');
  const healthy = enabled.filter((h) => h === 'healthy').length;
  const unhealthy = enabled.length - healthy;

  const cpu = samples.map((x) => x.resources.cpu_usage_percent);
  const memory = samples.map((x) => percent(x.resources.memory_total_bytes - x.resources.memory_available_bytes, x.resources.memory_total_bytes));
  const disk = samples.map((x) => percent(x.resources.disk_total_bytes - x.resources.disk_free_bytes, x.resources.disk_total_bytes));
  const since = `${Math.round((MAX_SAMPLES * SAMPLE_EVERY_MS) / 60000)} min`;

  return (
    <Screen kicker="The cloud at a glance" title="Overview" subtitle="Live workers, service health and what the cluster has to give, sampled every few seconds." testID="overview-screen">
      <ErrorBanner error={error} />
      {loading ? <Spinner label="Reading the cluster…" /> : null}
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

      <View style={s.charts}>
        <Card title="CPU" subtitle="Average use over live cores" style={s.chartCard}>
          <BarChart title="in use" values={cpu} max={100} format={pct} since={since} testID="chart-cpu" />
        </Card>
        <Card title="Memory" subtitle="Share in use on live workers" style={s.chartCard}>
          <BarChart title="in use" values={memory} max={100} format={pct} since={since} color={colors.goldBright} testID="chart-memory" />
        </Card>
        <Card title="Disk" subtitle="Share in use on live workers" style={s.chartCard}>
          <BarChart title="in use" values={disk} max={100} format={pct} since={since} color={colors.goldDim} testID="chart-disk" />
        </Card>
      </View>

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
