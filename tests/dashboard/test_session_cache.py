"""The dashboard reads its session from Redis (SESSION_ENGINE cached_db), written through to the database."""

from django.contrib.sessions.models import Session


def test_a_signed_in_page_reads_its_session_from_redis_and_the_database_keeps_it(client, world):
    response = client.post("/login/", {"username": "the-member", "password": "pw-123456"})
    assert response.status_code == 302
    key = client.cookies["sessionid"].value
    assert Session.objects.filter(
        session_key=key
    ).exists()  # written through: a restarted Redis signs no one out

    Session.objects.filter(session_key=key).delete()  # the page now has only Redis's copy
    page = client.get("/apps/")
    assert page.status_code == 200 and "the-member" in page.content.decode()

    client.post("/logout/")
    assert client.get("/apps/").status_code == 302  # signing out ends the cached copy too
