def test_owner_lists_apps(world):
    response = world.client("owner").get("/api/v1/apps")
    assert response.status_code == 200, response.content
    assert response.json()[0]["name"] == "demo"
