-- The service days of each GTFS service_id over the analysed period: the weekly pattern of
-- calendar.txt between its start and end dates, plus the days calendar_dates.txt adds
-- (exception_type 1), minus those it removes (2).

with calendar as (
    select * from {{ ref('stg_gtfs__calendar') }}
),

calendar_dates as (
    select * from {{ ref('stg_gtfs__calendar_dates') }}
),

period as (
    select * from {{ ref('int_transit_period') }}
),

-- a service day's trips may run past midnight into the next local day: start a day earlier
days as (
    select cast(day as date) as service_date
    from period, range(period.first_day - 1, period.last_day + 1, interval 1 day) as t(day)
),

weekly as (
    select calendar.partner_id, calendar.service_id, days.service_date
    from calendar
    inner join days
        on days.service_date between calendar.start_date and calendar.end_date
    where case isodow(days.service_date)
        when 1 then calendar.monday
        when 2 then calendar.tuesday
        when 3 then calendar.wednesday
        when 4 then calendar.thursday
        when 5 then calendar.friday
        when 6 then calendar.saturday
        when 7 then calendar.sunday
    end
),

added as (
    select calendar_dates.partner_id, calendar_dates.service_id, calendar_dates.service_date
    from calendar_dates
    inner join days on calendar_dates.service_date = days.service_date
    where calendar_dates.exception_type = 1
),

removed as (
    select partner_id, service_id, service_date
    from calendar_dates
    where exception_type = 2
),

scheduled as (
    select partner_id, service_id, service_date from weekly
    union
    select partner_id, service_id, service_date from added
),

final as (
    select partner_id, service_id, service_date from scheduled
    except
    select partner_id, service_id, service_date from removed
)

select partner_id, service_id, service_date from final
