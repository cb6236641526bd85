// Alerts: what metrics_manager's alert rules see now (firing, and pending until their rule's
// `for` has passed), the rules themselves, and the scrape targets its history comes from (each
// one's last scrape: up, when, how long, how many samples, the error).

import { Text, View } from 'react-native';

import { Card } from '../components/Card';
import { HistoryBanner } from '../components/History';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { StatusBadge } from '../components/StatusBadge';
import { Table } from '../components/Table';
import { ago, dateTime, duration } from '../format';
import { useAlertRules, useAlerts, useScrapeTargets, type AlertRule, type MetricsAlert } from '../hooks/useMetrics';
import { alertsStyles as s } from './alerts.styles';

/** A series' labels as `k=v, …` (the metric's name left out). */
export function labelText(labels: Record<string, string>): string {
  return Object.entries(labels)
    .filter(([k]) => k !== '__name__')
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
}

/** A value of an alert's query, to four significant digits. */
export function alertValue(v: number): string {
  return Number.isFinite(v) ? String(Number(v.toPrecision(4))) : String(v);
}

const OPS: Record<AlertRule['op'], string> = { gt: '>', ge: '≥', lt: '<', le: '≤', eq: '=', ne: '≠' };

/** A rule's condition as people read it: `sum by (job, service) of rate(name{status=~5..}[5 min]) > 1`. */
export function ruleCondition(r: AlertRule): string {
  const selector = r.matchers && r.matchers.length > 0 ? `${r.metric}{${r.matchers.join(', ')}}` : r.metric;
  const fn = r.function && r.function !== 'value' ? `${r.function}(${selector}[${duration((r.window_secs ?? 300) * 1000)}])` : selector;
  const by = r.by && r.by.length > 0 ? ` by (${r.by.join(', ')})` : '';
  const query = r.quantile != null ? `p${Math.round(r.quantile * 1000) / 10}${by} of ${fn}` : r.aggregation != null ? `${r.aggregation}${by} of ${fn}` : fn;
  return `${query} ${OPS[r.op]} ${r.threshold}`;
}

export function AlertsScreen() {
  const alerts = useAlerts(5000);
  const rules = useAlertRules();
  const targets = useScrapeTargets();
  const list = alerts.data;
  const firing = list?.filter((a) => a.state === 'firing').length ?? 0;
  const t = targets.data;
  const down = t?.targets.filter((x) => !x.up).length ?? 0;

  return (
    <Screen
      kicker="Observability"
      title="Alerts"
      subtitle="What metrics_manager's alert rules see now, the rules, and the targets it scrapes its history from."
      testID="alerts-screen"
    >
      <HistoryBanner
        error={alerts.error ?? rules.error ?? targets.error}
        onRetry={() => {
          void alerts.reload();
          void rules.reload();
          void targets.reload();
        }}
        about="No rule is evaluated and nothing is scraped while it is away."
        testID="alerts-error"
      />
      <Card
        title="Alerts"
        subtitle={list ? `${firing} firing · ${list.length - firing} pending · the rules are evaluated every 15 s` : undefined}
        testID="alerts-card"
      >
        {!list && !alerts.error ? <Spinner label="Reading the alerts…" /> : null}
        {list ? (
          <Table
            testID="alerts-table"
            data={list}
            keyOf={(a: MetricsAlert) => `${a.rule} ${labelText(a.labels)}`}
            empty="No rule's condition holds: nothing is firing or pending."
            columns={[
              { key: 'state', title: 'State', flex: 0.8, render: (a) => <StatusBadge status={a.state} tone={a.state === 'firing' ? 'danger' : 'warn'} testID={`alert-state-${a.rule}`} /> },
              { key: 'rule', title: 'Rule', flex: 1.3, render: (a) => <Text style={s.name}>{a.rule}</Text> },
              { key: 'labels', title: 'Series', flex: 3, render: (a) => <Text style={s.mono}>{labelText(a.labels) || '—'}</Text> },
              { key: 'value', title: 'Value', flex: 0.8, render: (a) => alertValue(a.value) },
              {
                key: 'since',
                title: 'Since',
                flex: 1.2,
                render: (a) => (
                  <View>
                    <Text style={s.text}>{ago(a.since)}</Text>
                    {a.fired_at ? <Text style={s.sub}>{`fired ${dateTime(a.fired_at)}`}</Text> : null}
                  </View>
                ),
              },
              { key: 'notified', title: 'Webhook', flex: 0.9, render: (a) => (a.state === 'firing' ? (a.notified ? 'notified' : 'not notified') : '—') },
            ]}
          />
        ) : null}
      </Card>

      <Card title="Rules" subtitle="Each rule's query is evaluated now: a series is an alert while the condition holds, firing once it has held for the rule's time." testID="alert-rules">
        {!rules.data && !rules.error ? <Spinner /> : null}
        {rules.data ? (
          <Table
            testID="alert-rules-table"
            data={rules.data}
            keyOf={(r) => r.name ?? r.metric}
            empty="No alert rule."
            columns={[
              {
                key: 'name',
                title: 'Rule',
                flex: 2,
                render: (r) => (
                  <View>
                    <Text style={s.name}>{r.name}</Text>
                    {r.description ? (
                      <Text style={s.sub} numberOfLines={2}>
                        {r.description}
                      </Text>
                    ) : null}
                  </View>
                ),
              },
              { key: 'condition', title: 'Condition', flex: 4, render: (r) => <Text style={s.mono}>{ruleCondition(r)}</Text> },
              { key: 'for', title: 'For', flex: 0.8, render: (r) => (r.for_secs ? duration(r.for_secs * 1000) : 'at once') },
              { key: 'webhook', title: 'Notifies', flex: 1.6, render: (r) => <Text style={s.mono} numberOfLines={1}>{r.webhook_url ?? 'ALERT_WEBHOOK_URL, if set'}</Text> },
            ]}
          />
        ) : null}
      </Card>

      <Card
        title="Scrape targets"
        subtitle={t ? `Every ${t.interval_secs} s · ${t.targets.length} targets${down > 0 ? `, ${down} down` : ''} · ${t.rounds_total} rounds, ${t.rounds_late_total} late` : undefined}
        testID="scrape-targets"
      >
        {!t && !targets.error ? <Spinner /> : null}
        {t ? (
          <Table
            testID="scrape-targets-table"
            data={t.targets}
            keyOf={(x) => x.url}
            empty="Nothing to scrape yet."
            columns={[
              {
                key: 'target',
                title: 'Target',
                flex: 1.6,
                render: (x) => (
                  <View>
                    <Text style={s.name}>{x.labels.service ?? x.labels.worker_name ?? x.labels.job ?? '—'}</Text>
                    <Text style={s.sub}>{x.labels.job ?? ''}</Text>
                  </View>
                ),
              },
              { key: 'url', title: 'URL', flex: 2.4, render: (x) => <Text style={s.mono} numberOfLines={1}>{x.url}</Text> },
              { key: 'up', title: 'State', flex: 0.8, render: (x) => <StatusBadge status={x.up ? 'up' : 'down'} tone={x.up ? 'ok' : 'danger'} /> },
              { key: 'last', title: 'Last scrape', flex: 1, render: (x) => ago(x.last_scrape) },
              { key: 'took', title: 'Took', flex: 0.8, render: (x) => duration(x.last_duration_ms) },
              { key: 'samples', title: 'Samples', flex: 0.8, render: (x) => String(x.last_samples) },
              { key: 'error', title: 'Error', flex: 2.4, render: (x) => (x.last_error ? <Text style={s.error} numberOfLines={2}>{x.last_error}</Text> : '—') },
            ]}
          />
        ) : null}
      </Card>
    </Screen>
  );
}
