//! Arrow Flight between the nodes of a cluster: an ingest node serves the
//! rows it acknowledged that are not in the bucket yet, so query nodes see
//! them within a refresh of their acknowledgement.
//!
//! `DoGet` with a ticket `{"table":"spans","after_lsn":N}` answers a stream
//! whose schema message carries a JSON header `{"node","seq","flushed_lsn"}`
//! in its app metadata (the manifest version the rows complete), then one
//! record batch per buffered write with an LSN above `N`, each carrying its
//! LSN (8 bytes, little-endian) in its app metadata.

use std::pin::Pin;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status, Streaming};

use crate::engine::{LiveRows, Store};
use crate::schema::Table;

/// What a query node asks for.
#[derive(Debug, Serialize, Deserialize)]
pub struct LiveTicket {
    /// `spans`, `logs` or `metric_points`.
    pub table: String,
    /// Only rows with a higher LSN (the highest the asker holds).
    pub after_lsn: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    node: String,
    seq: u64,
    flushed_lsn: u64,
}

/// The Flight service of an ingest node.
#[derive(Debug, Clone)]
pub struct LiveRowsService {
    store: Store,
}

/// A gRPC service answering `DoGet` for the store's live rows.
pub fn service(store: Store) -> FlightServiceServer<LiveRowsService> {
    FlightServiceServer::new(LiveRowsService { store }).max_encoding_message_size(usize::MAX)
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn unsupported<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not offered: this service only answers DoGet for a node's live rows"
    )))
}

fn encode(table: Table, rows: LiveRows) -> Result<Vec<FlightData>, Status> {
    let header = serde_json::to_vec(&Header {
        node: rows.node,
        seq: rows.seq,
        flushed_lsn: rows.flushed_lsn,
    })
    .map_err(|e| Status::internal(e.to_string()))?;
    let lsns: Vec<u64> = rows.entries.iter().map(|(l, _)| *l).collect();
    let batches: Vec<RecordBatch> = rows.entries.into_iter().map(|(_, b)| b).collect();
    let mut data = arrow_flight::utils::batches_to_flight_data(&table.schema(), batches)
        .map_err(|e| Status::internal(format!("cannot encode live rows: {e}")))?;
    // The store's schemas have no dictionaries: one message per batch.
    if data.len() != lsns.len() + 1 {
        return Err(Status::internal("unexpected dictionary messages"));
    }
    data[0].app_metadata = header.into();
    for (d, lsn) in data[1..].iter_mut().zip(lsns) {
        d.app_metadata = lsn.to_le_bytes().to_vec().into();
    }
    Ok(data)
}

#[tonic::async_trait]
impl FlightService for LiveRowsService {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoExchangeStream = BoxStream<FlightData>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket: LiveTicket =
            serde_json::from_slice(&request.get_ref().ticket).map_err(|e| {
                Status::invalid_argument(format!("ticket is not a live-rows request: {e}"))
            })?;
        let table = Table::from_name(&ticket.table).ok_or_else(|| {
            Status::invalid_argument(format!(
                "no table {:?}: expected spans, logs or metric_points",
                ticket.table
            ))
        })?;
        let rows = self.store.live_rows(table, ticket.after_lsn);
        let data = encode(table, rows)?;
        Ok(Response::new(
            futures::stream::iter(data.into_iter().map(Ok)).boxed(),
        ))
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unsupported("Handshake")
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unsupported("ListFlights")
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unsupported("GetFlightInfo")
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unsupported("PollFlightInfo")
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unsupported("GetSchema")
    }
    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        unsupported("DoPut")
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unsupported("DoExchange")
    }
    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        unsupported("DoAction")
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        unsupported("ListActions")
    }
}

/// Serves the store's live rows on `listener` until `shutdown`.
pub async fn serve(
    store: Store,
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), String> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .add_service(service(store))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .map_err(|e| e.to_string())
}

/// Asks the ingest node at `url` for its rows of `table` above `after_lsn`,
/// within `timeout` (connecting included).
pub async fn fetch(
    url: &str,
    table: Table,
    after_lsn: u64,
    timeout: Duration,
) -> Result<LiveRows, String> {
    tokio::time::timeout(timeout, fetch_inner(url, table, after_lsn))
        .await
        .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
}

async fn fetch_inner(url: &str, table: Table, after_lsn: u64) -> Result<LiveRows, String> {
    use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("bad URL {url:?}: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut client = arrow_flight::flight_service_client::FlightServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX);
    let ticket = serde_json::to_vec(&LiveTicket {
        table: table.name().to_string(),
        after_lsn,
    })
    .map_err(|e| e.to_string())?;
    let stream = client
        .do_get(Ticket {
            ticket: ticket.into(),
        })
        .await
        .map_err(|s| format!("DoGet failed: {}", s.message()))?
        .into_inner()
        .map(|r| r.map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s))));
    let mut decoder = FlightDataDecoder::new(stream);
    let mut header: Option<Header> = None;
    let mut entries = Vec::new();
    while let Some(msg) = decoder.next().await {
        let msg = msg.map_err(|e| format!("bad answer: {e}"))?;
        let meta = msg.app_metadata();
        match msg.payload {
            DecodedPayload::Schema(schema) => {
                if schema.fields() != table.schema().fields() {
                    return Err(format!(
                        "its {} schema differs from this node's",
                        table.name()
                    ));
                }
                header = Some(
                    serde_json::from_slice(&meta)
                        .map_err(|e| format!("bad header in the answer: {e}"))?,
                );
            }
            DecodedPayload::RecordBatch(batch) => {
                let lsn = <[u8; 8]>::try_from(meta.as_ref())
                    .map(u64::from_le_bytes)
                    .map_err(|_| "a batch without its LSN".to_string())?;
                let batch = batch
                    .with_schema(table.schema())
                    .map_err(|e| format!("bad batch: {e}"))?;
                entries.push((lsn, batch));
            }
            DecodedPayload::None => {}
        }
    }
    let h = header.ok_or("the answer has no schema message")?;
    Ok(LiveRows {
        node: h.node,
        seq: h.seq,
        flushed_lsn: h.flushed_lsn,
        entries,
    })
}
