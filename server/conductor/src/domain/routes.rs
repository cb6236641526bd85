//! The routing table: each service's healthy endpoints and how the gateway spreads requests over
//! them. Rebuilt by the deployment loop from instance reports and worker liveness; read by every
//! gateway request without touching the database.

use std::{
    collections::HashMap,
    hash::{Hash as _, Hasher as _},
    net::IpAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use uuid::Uuid;

use crate::model::LoadBalancing;

/// One healthy instance the gateway may send requests to.
#[derive(Debug)]
pub struct RouteEndpoint {
    pub instance_id: Uuid,
    pub worker_id: Uuid,
    /// `host:port`.
    pub address: String,
    /// The instance serves HTTPS (its certificate from the cluster CA).
    pub tls: bool,
    /// Requests in flight through the gateway (for least_connections); survives table rebuilds.
    pub in_flight: Arc<AtomicUsize>,
}

#[derive(Debug)]
pub struct ServiceRoute {
    pub load_balancing: LoadBalancing,
    pub endpoints: Vec<RouteEndpoint>,
    /// Why there is no endpoint, when the reason is known (a stateful service's volume is on a
    /// worker that is away, or being moved).
    pub unavailable: Option<Unavailable>,
    next: Arc<AtomicUsize>,
}

impl ServiceRoute {
    /// The endpoint for the next request, skipping `exclude` (instances that just failed).
    pub fn pick(&self, client: IpAddr, exclude: &[Uuid]) -> Option<&RouteEndpoint> {
        let usable = || {
            self.endpoints
                .iter()
                .filter(|e| !exclude.contains(&e.instance_id))
        };
        let count = usable().count();
        if count == 0 {
            return None;
        }
        match self.load_balancing {
            LoadBalancing::RoundRobin => {
                usable().nth(self.next.fetch_add(1, Ordering::Relaxed) % count)
            }
            LoadBalancing::LeastConnections => {
                // Ties go round-robin, so an idle service still spreads its requests.
                let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
                usable()
                    .cycle()
                    .skip(start)
                    .take(count)
                    .min_by_key(|e| e.in_flight.load(Ordering::Relaxed))
            }
            // Rendezvous hashing: a client stays on its instance while that instance stays healthy,
            // and only the clients of an instance that goes move elsewhere.
            LoadBalancing::IpHash => usable().max_by_key(|e| {
                let mut h = std::hash::DefaultHasher::new();
                client.hash(&mut h);
                e.instance_id.hash(&mut h);
                h.finish()
            }),
        }
    }
}

/// Every gateway-routed service, healthy endpoints or not (a known service with none gets 503).
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    pub services: HashMap<String, Arc<ServiceRoute>>,
}

/// One service's routing as the deployment loop computed it.
pub struct RouteSpec {
    pub service: String,
    pub load_balancing: LoadBalancing,
    /// (instance, worker, address)
    /// (instance, worker, `host:port`, serves HTTPS)
    pub endpoints: Vec<(Uuid, Uuid, String, bool)>,
    pub unavailable: Option<Unavailable>,
}

/// The gateway's 503 for a service with no endpoint for a known reason.
#[derive(Debug, Clone)]
pub struct Unavailable {
    /// `volume_unavailable` or `service_moving`.
    pub code: &'static str,
    pub message: String,
}

#[derive(Default)]
pub struct Routes {
    table: RwLock<Arc<RouteTable>>,
}

impl Routes {
    pub fn snapshot(&self) -> Arc<RouteTable> {
        self.table.read().expect("routes lock").clone()
    }

    /// Replaces the table, keeping in-flight counts and round-robin positions.
    pub fn replace(&self, specs: Vec<RouteSpec>) {
        let old = self.snapshot();
        let services = specs
            .into_iter()
            .map(|spec| build_route(&old, spec))
            .collect();
        *self.table.write().expect("routes lock") = Arc::new(RouteTable { services });
    }

    /// Replaces the routes of the services `specs` name, and no other's (a deploy changes one
    /// service and what it depends on; rebuilding every route at each was a large part of it).
    pub fn update(&self, specs: Vec<RouteSpec>) {
        let mut table = self.table.write().expect("routes lock");
        let routes: Vec<_> = specs.into_iter().map(|s| build_route(&table, s)).collect();
        // Changed in place unless a gateway request holds the table now (then copied once, and
        // that request keeps the table it started with).
        let services = &mut Arc::make_mut(&mut table).services;
        services.extend(routes);
    }
}

/// A service's route from its spec, keeping the in-flight counts and the round-robin position of
/// its route in `old`.
fn build_route(old: &RouteTable, spec: RouteSpec) -> (String, Arc<ServiceRoute>) {
    let previous = old.services.get(&spec.service);
    let endpoints = spec
        .endpoints
        .into_iter()
        .map(|(instance_id, worker_id, address, tls)| {
            let in_flight = previous
                .and_then(|p| p.endpoints.iter().find(|e| e.instance_id == instance_id))
                .map_or_else(Arc::default, |e| e.in_flight.clone());
            RouteEndpoint {
                instance_id,
                worker_id,
                address,
                tls,
                in_flight,
            }
        })
        .collect();
    let next = previous.map_or_else(Arc::default, |p| p.next.clone());
    (
        spec.service,
        Arc::new(ServiceRoute {
            load_balancing: spec.load_balancing,
            endpoints,
            unavailable: spec.unavailable,
            next,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(lb: LoadBalancing, n: u8) -> ServiceRoute {
        ServiceRoute {
            load_balancing: lb,
            endpoints: (0..n)
                .map(|i| RouteEndpoint {
                    instance_id: Uuid::from_bytes([i; 16]),
                    worker_id: Uuid::nil(),
                    address: format!("127.0.0.1:{}", 20000 + u16::from(i)),
                    tls: false,
                    in_flight: Arc::default(),
                })
                .collect(),
            unavailable: None,
            next: Arc::default(),
        }
    }

    #[test]
    fn round_robin_visits_every_endpoint_in_turn() {
        let r = route(LoadBalancing::RoundRobin, 3);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let picks: Vec<_> = (0..6)
            .map(|_| r.pick(ip, &[]).unwrap().instance_id)
            .collect();
        assert_eq!(picks[0..3], picks[3..6]);
        assert_ne!(picks[0], picks[1]);
        assert_ne!(picks[1], picks[2]);
    }

    #[test]
    fn ip_hash_is_sticky_and_moves_only_clients_of_a_removed_endpoint() {
        let r = route(LoadBalancing::IpHash, 4);
        let clients: Vec<IpAddr> = (1..=50u8).map(|i| [10, 0, 1, i].into()).collect();
        let first: Vec<_> = clients
            .iter()
            .map(|c| r.pick(*c, &[]).unwrap().instance_id)
            .collect();
        let again: Vec<_> = clients
            .iter()
            .map(|c| r.pick(*c, &[]).unwrap().instance_id)
            .collect();
        assert_eq!(first, again);
        let gone = Uuid::from_bytes([0; 16]);
        for (c, before) in clients.iter().zip(&first) {
            let after = r.pick(*c, &[gone]).unwrap().instance_id;
            if *before != gone {
                assert_eq!(after, *before, "a client of a remaining endpoint moved");
            }
        }
    }

    #[test]
    fn least_connections_avoids_the_busy_endpoint() {
        let r = route(LoadBalancing::LeastConnections, 2);
        r.endpoints[0].in_flight.store(5, Ordering::Relaxed);
        for _ in 0..4 {
            assert_eq!(
                r.pick([127, 0, 0, 1].into(), &[]).unwrap().instance_id,
                r.endpoints[1].instance_id
            );
        }
    }
}
