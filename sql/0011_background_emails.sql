-- Email jobs are background jobs (priority -1, service/queue/store.py BACKGROUND): claimed
-- after every other ready job, and left waiting by a process busy with other work. Email
-- jobs queued before this version join them.
UPDATE jobs SET priority = -1 WHERE kind = 'email.send' AND priority = 0;
