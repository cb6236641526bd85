use std::sync::Arc;

use aerekos_common::ApiResult;
use poem::web::Data;
use poem_openapi::{OpenApi, param::Path, payload::Json};
use uuid::Uuid;

use super::{ApiTags, UserAuth};
use crate::{
    AppState,
    model::{CreateUserRequest, SetPasswordRequest, UpdateUserRequest, User, UserList},
};

pub struct UsersApi;

#[OpenApi(tag = "ApiTags::Users")]
impl UsersApi {
    /// Every user (admin only).
    #[oai(path = "/api/users", method = "get", operation_id = "list_users")]
    async fn list(&self, state: Data<&Arc<AppState>>, auth: UserAuth) -> ApiResult<Json<UserList>> {
        auth.0.require_admin()?;
        Ok(Json(UserList {
            users: state.auth.list_users().await?,
        }))
    }

    /// Create a user (admin only). 409 `user_exists` if the username is taken.
    #[oai(path = "/api/users", method = "post", operation_id = "create_user")]
    async fn create(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        body: Json<CreateUserRequest>,
    ) -> ApiResult<Json<User>> {
        auth.0.require_admin()?;
        state.auth.create_user(&body).await.map(Json)
    }

    /// Change a user's role or disable/enable it (admin only). Disabling or demoting revokes its
    /// tokens; 409 `last_admin` for the only enabled admin.
    #[oai(
        path = "/api/users/:id",
        method = "patch",
        operation_id = "update_user"
    )]
    async fn update(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        id: Path<Uuid>,
        body: Json<UpdateUserRequest>,
    ) -> ApiResult<Json<User>> {
        auth.0.require_admin()?;
        state.auth.update_user(&auth.0, id.0, &body).await.map(Json)
    }

    /// Delete a user (admin only); its tokens are revoked. 409 `last_admin` for the only enabled admin.
    #[oai(
        path = "/api/users/:id",
        method = "delete",
        operation_id = "delete_user"
    )]
    async fn delete(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        id: Path<Uuid>,
    ) -> ApiResult<()> {
        auth.0.require_admin()?;
        state.auth.delete_user(&auth.0, id.0).await
    }

    /// Set a user's password (admin only); its tokens are revoked.
    #[oai(
        path = "/api/users/:id/password",
        method = "post",
        operation_id = "reset_user_password"
    )]
    async fn reset_password(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        id: Path<Uuid>,
        body: Json<SetPasswordRequest>,
    ) -> ApiResult<Json<User>> {
        auth.0.require_admin()?;
        state
            .auth
            .reset_password(id.0, &body.password)
            .await
            .map(Json)
    }
}
