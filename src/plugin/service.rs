//! The three CNPG-I services over [`super::inject`] and [`super::status`]:
//! decoding, logging and encoding only. No request makes the server panic:
//! every input is parsed as untrusted JSON and an unreadable one is an
//! `InvalidArgument` answer.

use super::inject::{self, MountPaths, Outcome, ParamError, SidecarTemplate, PLUGIN_NAME};
use super::kube::KubeView;
use super::proto::identity::identity_server::Identity;
use super::proto::identity::plugin_capability::service::Type as ServiceType;
use super::proto::identity::plugin_capability::{self, Service};
use super::proto::identity::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginMetadataRequest,
    GetPluginMetadataResponse, PluginCapability, ProbeRequest, ProbeResponse,
};
use super::proto::lifecycle::operator_lifecycle_server::OperatorLifecycle;
use super::proto::lifecycle::operator_operation_type::Type as OperationType;
use super::proto::lifecycle::{
    OperatorLifecycleCapabilities, OperatorLifecycleCapabilitiesRequest,
    OperatorLifecycleCapabilitiesResponse, OperatorLifecycleRequest, OperatorLifecycleResponse,
    OperatorOperationType,
};
use super::proto::operator::operator_capability::rpc::Type as RpcType;
use super::proto::operator::operator_capability::{self, Rpc};
use super::proto::operator::operator_server::Operator;
use super::proto::operator::{
    DeregisterRequest, DeregisterResponse, OperatorCapabilitiesRequest, OperatorCapabilitiesResult,
    OperatorCapability, OperatorMutateClusterRequest, OperatorMutateClusterResult,
    OperatorValidateClusterChangeRequest, OperatorValidateClusterChangeResult,
    OperatorValidateClusterCreateRequest, OperatorValidateClusterCreateResult,
    SetStatusInClusterRequest, SetStatusInClusterResponse, ValidationError,
};
use super::status::{self, StatusMode};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use tonic::{Request, Response, Status};

/// What every call needs; shared by the three services.
pub struct Plugin {
    pub template: SidecarTemplate,
    pub paths: MountPaths,
    pub status_mode: StatusMode,
    /// The API server, for the status summary (absent: the Cluster's JSON only).
    pub kube: Option<KubeView>,
}

/// The three services, each a handle on one [`Plugin`].
#[derive(Clone)]
pub struct Services(pub Arc<Plugin>);

fn json(bytes: &[u8], what: &str) -> Result<Value, Status> {
    if bytes.is_empty() {
        return Err(Status::invalid_argument(format!("{what} is empty")));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Status::invalid_argument(format!("{what} is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(Status::invalid_argument(format!(
            "{what} is not a JSON object"
        )));
    }
    Ok(value)
}

/// Whether `errors` are new for `cluster`: the hook runs for every pod at
/// every reconciliation, so a refusal is logged as a warning once.
fn first_time(cluster: &str, errors: &str) -> bool {
    static SEEN: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Default::default);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if seen.get(cluster).map(String::as_str) == Some(errors) {
        return false;
    }
    // Bounded: Clusters come and go.
    if seen.len() >= 4096 {
        seen.clear();
    }
    seen.insert(cluster.to_string(), errors.to_string());
    true
}

fn object_name(value: &Value) -> String {
    let get = |p: &str| value.pointer(p).and_then(Value::as_str).unwrap_or("?");
    format!("{}/{}", get("/metadata/namespace"), get("/metadata/name"))
}

fn validation_errors(errors: Vec<ParamError>) -> Vec<ValidationError> {
    errors
        .into_iter()
        .map(|e| ValidationError {
            // The operator reads path_components[0] without a check.
            path_components: if e.path.is_empty() {
                vec!["spec".to_string()]
            } else {
                e.path
            },
            value: e.value,
            message: e.message,
        })
        .collect()
}

#[tonic::async_trait]
impl Identity for Services {
    async fn get_plugin_metadata(
        &self,
        _: Request<GetPluginMetadataRequest>,
    ) -> Result<Response<GetPluginMetadataResponse>, Status> {
        Ok(Response::new(GetPluginMetadataResponse {
            name: PLUGIN_NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            display_name: "cnpg-autoresize".to_string(),
            description: "Adds the cnpg-autoresize manager (PVC auto-resizing) to the instance pods of Clusters that list the plugin, and reports on it in the Cluster's status".to_string(),
            project_url: "https://github.com/cnpg-autoresize/cnpg-autoresize".to_string(),
            repository_url: "https://github.com/cnpg-autoresize/cnpg-autoresize".to_string(),
            license: "Apache-2.0".to_string(),
            license_url: "https://www.apache.org/licenses/LICENSE-2.0".to_string(),
            maturity: "alpha".to_string(),
            vendor: "cnpg-autoresize".to_string(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        // Every entry sets its oneof: the operator dereferences it. Not
        // TYPE_INSTANCE_SIDECAR_INJECTION: the sidecar serves no CNPG-I
        // socket, and instance managers of 1.27+ would wait for one.
        let service = |t: ServiceType| PluginCapability {
            r#type: Some(plugin_capability::Type::Service(Service {
                r#type: t as i32,
            })),
        };
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: vec![
                service(ServiceType::LifecycleService),
                service(ServiceType::OperatorService),
            ],
        }))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse { ready: true }))
    }
}

#[tonic::async_trait]
impl OperatorLifecycle for Services {
    async fn get_capabilities(
        &self,
        _: Request<OperatorLifecycleCapabilitiesRequest>,
    ) -> Result<Response<OperatorLifecycleCapabilitiesResponse>, Status> {
        // CREATE for every version; EVALUATE (1.26+) puts the container in
        // the pod spec the operator compares, so a change rolls the pods.
        // Not PATCH/UPDATE/DELETE: the operator patches pods often.
        let op = |t: OperationType| OperatorOperationType { r#type: t as i32 };
        Ok(Response::new(OperatorLifecycleCapabilitiesResponse {
            lifecycle_capabilities: vec![OperatorLifecycleCapabilities {
                group: String::new(),
                kind: "Pod".to_string(),
                operation_types: vec![op(OperationType::Create), op(OperationType::Evaluate)],
            }],
        }))
    }

    async fn lifecycle_hook(
        &self,
        request: Request<OperatorLifecycleRequest>,
    ) -> Result<Response<OperatorLifecycleResponse>, Status> {
        let request = request.into_inner();
        let operation = request
            .operation_type
            .map(|o| OperationType::try_from(o.r#type).unwrap_or(OperationType::Unspecified))
            .unwrap_or(OperationType::Unspecified);
        // Only the verbs we asked for; anything else leaves the object alone.
        if !matches!(operation, OperationType::Create | OperationType::Evaluate) {
            return Ok(Response::new(OperatorLifecycleResponse::default()));
        }
        let cluster = json(&request.cluster_definition, "cluster_definition")?;
        let object = json(&request.object_definition, "object_definition")?;
        let plugin = &self.0;
        let outcome = inject::lifecycle_hook(&plugin.template, &plugin.paths, &cluster, &object);
        let json_patch = match outcome {
            Outcome::Patch(ops) if ops.is_empty() => Vec::new(),
            Outcome::Patch(ops) => {
                tracing::debug!(pod = %object_name(&object), operation = operation.as_str_name(), "adding the manager container");
                serde_json::to_vec(&ops).map_err(|e| Status::internal(e.to_string()))?
            }
            Outcome::Skip(reason) => {
                tracing::debug!(object = %object_name(&object), %reason, "nothing to do");
                Vec::new()
            }
            // Not injecting is the safer answer: an error would keep
            // CloudNativePG from creating the instance pod at all
            // (docs/deploy-cnpg-i.md#invalid-parameters). The status says why.
            Outcome::Invalid(errors) => {
                let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
                let text = text.join("; ");
                let cluster_name = object_name(&cluster);
                if first_time(&cluster_name, &text) {
                    tracing::warn!(cluster = %cluster_name, errors = %text, "parameters refused: the manager container is not added to the Cluster's pods");
                } else {
                    tracing::debug!(cluster = %cluster_name, pod = %object_name(&object), errors = %text, "parameters refused");
                }
                Vec::new()
            }
        };
        Ok(Response::new(OperatorLifecycleResponse { json_patch }))
    }
}

#[tonic::async_trait]
impl Operator for Services {
    async fn get_capabilities(
        &self,
        _: Request<OperatorCapabilitiesRequest>,
    ) -> Result<Response<OperatorCapabilitiesResult>, Status> {
        let rpc = |t: RpcType| OperatorCapability {
            r#type: Some(operator_capability::Type::Rpc(Rpc { r#type: t as i32 })),
        };
        let mut capabilities = vec![
            rpc(RpcType::ValidateClusterCreate),
            rpc(RpcType::ValidateClusterChange),
            rpc(RpcType::MutateCluster),
        ];
        if self.0.status_mode != StatusMode::Never {
            capabilities.push(rpc(RpcType::SetStatusInCluster));
        }
        Ok(Response::new(OperatorCapabilitiesResult { capabilities }))
    }

    async fn validate_cluster_create(
        &self,
        request: Request<OperatorValidateClusterCreateRequest>,
    ) -> Result<Response<OperatorValidateClusterCreateResult>, Status> {
        let cluster = json(&request.into_inner().definition, "definition")?;
        Ok(Response::new(OperatorValidateClusterCreateResult {
            validation_errors: validation_errors(inject::validate_cluster(
                &self.0.template,
                &cluster,
            )),
        }))
    }

    async fn validate_cluster_change(
        &self,
        request: Request<OperatorValidateClusterChangeRequest>,
    ) -> Result<Response<OperatorValidateClusterChangeResult>, Status> {
        // The new Cluster must be valid, whatever the old one was.
        let cluster = json(&request.into_inner().new_cluster, "new_cluster")?;
        Ok(Response::new(OperatorValidateClusterChangeResult {
            validation_errors: validation_errors(inject::validate_cluster(
                &self.0.template,
                &cluster,
            )),
        }))
    }

    async fn mutate_cluster(
        &self,
        request: Request<OperatorMutateClusterRequest>,
    ) -> Result<Response<OperatorMutateClusterResult>, Status> {
        // Defaults are applied in the pod, never written into the user's
        // Cluster: nothing to change.
        json(&request.into_inner().definition, "definition")?;
        Ok(Response::new(OperatorMutateClusterResult::default()))
    }

    async fn set_status_in_cluster(
        &self,
        request: Request<SetStatusInClusterRequest>,
    ) -> Result<Response<SetStatusInClusterResponse>, Status> {
        let cluster = json(&request.into_inner().cluster, "cluster")?;
        let plugin = &self.0;
        if plugin.status_mode == StatusMode::Never {
            return Ok(Response::new(SetStatusInClusterResponse::default()));
        }
        let enabled = matches!(inject::plugin_entry(&cluster), Ok(Some(e)) if e.enabled)
            || inject::plugin_entry(&cluster).is_err();
        if !enabled {
            return Ok(Response::new(SetStatusInClusterResponse::default()));
        }
        let parameter_errors = inject::validate_cluster(&plugin.template, &cluster);
        let namespace = cluster
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        let name = cluster
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let policy = plugin
            .kube
            .as_ref()
            .and_then(|kube| kube.policy_for(namespace, name));
        let mut context = status::Context {
            parameter_errors,
            policy: policy.as_ref(),
            ..Default::default()
        };
        if let Some(kube) = &plugin.kube {
            let mut unavailable = kube.unavailable();
            if !namespace.is_empty() && !name.is_empty() {
                match kube.leader(namespace, name).await {
                    Ok(holder) => context.leader = holder,
                    Err(e) => {
                        unavailable = Some(match unavailable {
                            Some(u) => format!("{u}; {e}"),
                            None => e,
                        })
                    }
                }
            }
            context.unavailable = unavailable;
        }
        let summary = status::summarize(&cluster, &context);
        Ok(Response::new(SetStatusInClusterResponse {
            json_status: status::answer(&summary, plugin.status_mode).unwrap_or_default(),
        }))
    }

    async fn deregister(
        &self,
        _: Request<DeregisterRequest>,
    ) -> Result<Response<DeregisterResponse>, Status> {
        // The plugin keeps nothing per Cluster.
        Ok(Response::new(DeregisterResponse {}))
    }
}
